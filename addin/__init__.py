"""Plancell's Excel edge: CLI, workbook reading/writing, (later) xlwings UDFs and ribbon."""

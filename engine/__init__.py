"""Plancell's calculation engine. Never imports xlwings: Excel lives in ``addin``."""

__version__ = "0.1.0"

"""Benchmarks of Plancell against peers (mlforecast, seasonal naive) on the same data in one run.

Not part of the product and not a test suite: see ``bench/README.md``.
"""

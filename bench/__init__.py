"""Benchmarks: `python -m bench` runs every module here that defines run(); results go to BENCHMARKS.md."""

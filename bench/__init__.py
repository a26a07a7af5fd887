"""Benchmarks run by `make bench`: one module per area, each runnable as `python -m bench.<area>`."""

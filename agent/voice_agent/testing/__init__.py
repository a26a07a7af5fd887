"""A Python voice client (tests, benchmarks, load generation against any deployment)."""

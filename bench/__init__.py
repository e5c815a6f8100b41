"""Benchmarks for corpusforge stages: each Spark stage against a plain-Python baseline (see README.md)."""

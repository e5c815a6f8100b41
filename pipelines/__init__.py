"""Spark stages of corpusforge.

Each stage reads a Parquet dataset of documents (see ``docs/schema.md``) and writes one,
following the contract in :mod:`pipelines.stage`. Importing this package does not import
pyspark: the shard reader and the schema helpers stay usable without a JVM.
"""

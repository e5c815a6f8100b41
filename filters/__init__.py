"""Pure-Python document filters and annotators: quality, repetition, language, PII.

No Spark, no Prefect: the Spark stages in ``pipelines`` and the synthetic-data stages in
``synth`` both run these same classes, so a filter behaves identically everywhere.
"""

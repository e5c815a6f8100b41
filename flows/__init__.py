"""Orchestration: recipes, the Prefect flows and the `corpusforge` command line."""

"""Errors a user can act on. The CLI prints their message alone, without a traceback."""


class CorpusforgeError(Exception):
    """Base class of errors caused by input, configuration or environment, not by a bug."""


class SchemaError(CorpusforgeError):
    """A Parquet input does not match the document schema; the message names file and column."""


class StageInputError(CorpusforgeError):
    """A stage's input is missing, empty or unusable."""


class JavaMissingError(CorpusforgeError):
    """Spark cannot start because no suitable Java runtime was found."""


class StageLockedError(CorpusforgeError):
    """Another process is writing the same stage output."""

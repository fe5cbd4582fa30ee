"""Exception types. Every message says what was wrong, where (file, column, key) and what to do."""

from __future__ import annotations


class RecDistillError(Exception):
    """Base class for errors that the command line prints without a traceback."""


class ConfigError(RecDistillError):
    """A configuration file or value is invalid."""


class SchemaError(RecDistillError):
    """A schema file is invalid, or data does not match its schema."""


class DataError(RecDistillError):
    """A data file is unreadable or holds values the schema does not allow."""


class ArtefactError(RecDistillError):
    """An artefact (checkpoint, soft labels, preprocessing) is missing or does not match its inputs."""


class ServingError(RecDistillError):
    """The Triton server could not be prepared, started or reached."""

"""Typed exceptions shared by every stage.

Every error a user can cause is an :class:`SgnlakeError`. Its message is one line
that names the problem and the fix; the CLI prints it and exits with code 2.
"""

from __future__ import annotations


class SgnlakeError(Exception):
    """Base class of all user-facing sgnlake errors (one-line message)."""

    exit_code = 2


class ConfigError(SgnlakeError, ValueError):
    """A run or sweep configuration value is invalid."""


class LakeError(SgnlakeError):
    """The lake cannot be used as asked (not a lake, not writable, ...)."""


class NotALakeError(LakeError):
    """The path exists but is not an sgnlake lake."""


class LakeNotFoundError(NotALakeError):
    """Nothing is at the location yet (a missing path, an empty folder, an empty prefix of a bucket).

    A lake can be created there: :func:`~sgnlake.schema.lake.probe_lake` answers None for it.
    """


class LakeReadOnlyError(LakeError):
    """A write was asked of a lake (or store) that is read-only."""


class SchemaVersionError(LakeError):
    """The lake was written with a schema this version of sgnlake cannot read."""


class ValidationError(LakeError):
    """The lake does not satisfy the contract (missing array, wrong dims, ...)."""


class RunExistsError(LakeError):
    """A run with this id already exists and was not asked to resume."""


class RunNotFoundError(LakeError, KeyError):
    """No run with this id in the lake."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CorruptChunkError(LakeError):
    """A stored chunk cannot be decoded."""


class DivergedError(SgnlakeError):
    """Training produced non-finite losses or gradients."""

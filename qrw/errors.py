"""The project's error tree for the CLI and library code outside the serving path.

Why a tree: the CLI maps every ``QrwError`` to a one-line message and exit code 2, so a user never
sees a traceback for a mistake they can fix (a missing file, a bad URL, an unknown index). Anything
that is *not* a ``QrwError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class QrwError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(QrwError):
    """A configuration value or combination is invalid."""


class InputDataError(QrwError):
    """A data file (catalog, judgments, rules) is missing or malformed."""


class NodeError(QrwError):
    """The local OpenSearch node could not be fetched, started, or stopped."""


class SearchBackendError(QrwError):
    """OpenSearch answered with an error, or could not be reached."""


class UnreachableError(SearchBackendError):
    """No OpenSearch answers at the configured URL."""


class IndexMissingError(SearchBackendError):
    """The index (or alias) asked for does not exist."""

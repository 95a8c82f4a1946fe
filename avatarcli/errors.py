"""Error types that separate a user's mistake (exit 2, one line) from a bug (exit 1)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: a bad file, a missing weight, a wrong option.

    The CLI prints ``str(err)`` as one line and exits with code 2, never a traceback.
    Messages should say what went wrong, which file, and what to do.
    """

    exit_code = 2


class InputFileError(UserError):
    """An input file that cannot be read or has the wrong content."""


class MissingWeightsError(UserError):
    """A command needs neural weights that are not installed."""


class AvatarFormatError(UserError):
    """An avatar file that is corrupt, from a newer version, or for another body/UV layout."""

"""Errors a user can fix. The CLI prints them as one line and exits non-zero, with no traceback."""


class HfcompressError(Exception):
    """A mistake in the user's input or environment, explained in one sentence."""


class UsageError(HfcompressError):
    """Bad arguments, files, or hyperparameters, found before any long work starts (exit code 2)."""

    exit_code = 2


HfcompressError.exit_code = 1

"""Errors that the command line turns into one clear line and exit status 2."""


class UsageError(ValueError):
    """Bad usage or bad input: the message names what was wrong and what to do."""


class DataError(UsageError):
    """A data file is missing, truncated, corrupt or inconsistent; the message names the file."""

"""Errors a user can cause. The command line prints these as one line and exits non-zero."""


class UserError(Exception):
    """A mistake the user can fix: a bad path, a wrong or damaged file, a malformed CSV."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit its network; the message names the file."""

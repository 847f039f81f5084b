"""The exceptions every room shares: a mistake the user can fix, and a run stopped by a signal."""

INTERRUPTED_EXIT = 130  # what shells report for a run stopped by a signal


class UserError(Exception):
    """Bad input: the message names the key, value or file at fault and what to do about it."""


class Interrupted(BaseException):
    """A run stopped on a signal; the message names it and how to continue.

    A BaseException, like KeyboardInterrupt: an ``except Exception`` in a reward or a library cannot swallow it.
    """

"""The one exception type for mistakes a user can fix; the launcher prints it without a traceback."""


class UserError(Exception):
    """Bad input: the message names the key, value or file at fault and what to do about it."""

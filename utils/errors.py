"""The one exception type for mistakes a user can fix (bad config, missing file, malformed record)."""


class UserError(Exception):
    """A known, user-fixable error.

    The CLI prints its message as one line on stderr and exits non-zero; the message should name the
    file, record and field at fault, and say what to do about it.
    """

"""The one exception a user can cause. The CLI turns it into one line on stderr and exit code 2."""


class ShuffleTVMError(Exception):
    """A problem with the user's input or environment; the message says what was wrong and what to do."""

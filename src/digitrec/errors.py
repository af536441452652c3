"""The one exception type for errors a user can cause and fix, and its subclasses.

The CLI prints the message and exits non-zero; the service maps each subclass to a status code
(`service.errors`). Anything else escaping is a bug.
"""


class DigitrecError(Exception):
    """A problem the user can act on; the message names the thing and what to do."""


class InputTooLargeError(DigitrecError):
    """An input over a size limit (bytes, pixels, files): the service answers 413."""

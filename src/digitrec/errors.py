"""The one exception type for errors a user can cause and fix.

The CLI prints its message and exits non-zero; the service turns it into a 4xx. Anything else
escaping is a bug.
"""


class DigitrecError(Exception):
    """A problem the user can act on; the message names the thing and what to do."""

"""The user-error type: anything a user can cause (bad file, no camera) and fix without a traceback.

The CLI prints `error: <message>` for these on one line and exits with status 2.
"""


class UserError(Exception):
    """A problem with the user's input or machine, worth one clear line and a non-zero exit."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread by the entry point's handler so every `finally` and `with`
    finalises its outputs; the entry point prints `interrupted` and exits 143."""

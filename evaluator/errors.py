"""The one error type for mistakes a user can fix (bad flag, missing file, bad trace, bad config).

Both the evaluator and the harness raise it; the CLI prints its message as a single line and
exits 2. Programs that fail evaluation are results (`valid: false`), never exceptions.
"""


class UserError(Exception):
    """A user mistake: the message says what was wrong, where, and how to fix it."""

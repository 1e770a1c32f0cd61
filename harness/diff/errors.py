"""The diff engine's errors: a one-line `reason` that goes verbatim to the model and the journal."""


class EngineError(ValueError):
    """A problem with an LLM answer or its application; `reason` is one line the model can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResponseError(EngineError):
    """A reply that cannot be read unambiguously; `reason` is a one-line message for the model.

    Here rather than in `response.py` because reading a reply takes two modules (`reasoning.py`
    finds where the answer starts, `response.py` reads it) and both raise it."""


class ProgramError(EngineError):
    """The program being edited is itself broken (its EVOLVE markers): the user's to fix, not the model's.
    Callers that face a user turn it into their own error type (the CLI: exit 2)."""

"""The diff engine's error base: a one-line `reason` that goes verbatim to the model and the journal."""


class EngineError(ValueError):
    """A problem with an LLM answer or its application; `reason` is one line the model can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

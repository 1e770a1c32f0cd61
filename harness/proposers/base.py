"""The one interface every proposer implements: a prompt in, an LLM-format response out.

A proposer is where a candidate's text comes from: a real model (`llm`), offline mutation
operators (`mutate`), or the recorded answers of an earlier run (`replay`). The controller
treats them alike, so everything downstream (parsing, patching, evaluation, the journal) is
the same whichever one produced the text.

Three failure kinds, because the controller must react to each differently:

* `ProposerError`: this one call failed after its retries (endpoint down for a while, prompt
  too long, malformed answers). The controller journals it and the run goes on.
* `BudgetExhausted`: the money limit is reached; the run should stop cleanly. It is *not* a
  `ProposerError`, so a handler that journals-and-continues cannot swallow it by accident.
* `evaluator.errors.UserError`: a configuration mistake (missing key, rejected key, unknown
  model, unreachable endpoint at start-up); retrying cannot help, the user must act.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class ProposalRequest:
    """Everything a proposer may use to answer one prompt.

    `messages` is the chat conversation (system + user, plus earlier answers and fix requests
    when a patch failed). `parent_code` and `crossover` serve the offline proposer, which edits
    code directly instead of reading the prompt: `crossover` is (other candidate's code, the
    common ancestor's code) when the controller asks for a merge. `seed` makes every random
    choice a proposer takes (model pick, operator pick, jitter) reproducible.
    """

    messages: tuple[dict[str, str], ...]
    prompt_hash: str
    parent_code: str
    crossover: tuple[str, str] | None
    seed: int


@dataclass(frozen=True)
class Proposal:
    """One answer and what it cost. `tokens_estimated` is True when the endpoint sent no usage."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_s: float
    tokens_estimated: bool = False


class Proposer(Protocol):
    """Turns a request into a response text in the shared format (NAME/DESCRIPTION/DIFF or CODE)."""

    name: str

    def propose(self, request: ProposalRequest) -> Proposal:
        """Answer one request, or raise ProposerError / BudgetExhausted / UserError (see module doc)."""
        ...


class ProposerError(Exception):
    """One proposal failed after its retries; a result to journal, not a reason to stop the run."""


class BudgetExhausted(Exception):
    """The configured spending limit is reached: no further call will be made."""


def prompt_hash(messages: Sequence[dict[str, str]]) -> str:
    """sha256 of the conversation as canonical JSON (sorted keys, no whitespace, UTF-8).

    Canonical so that the same conversation always hashes the same across processes and Python
    versions: replay looks recorded answers up by this hash.
    """
    canonical = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

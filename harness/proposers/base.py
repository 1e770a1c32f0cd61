"""The one interface every proposer implements: a prompt in, an LLM-format response out.

A proposer is where a candidate's text comes from: a real model (`llm`), offline mutation
operators (`mutate`), or the recorded answers of an earlier run (`replay`). The controller
treats them alike, so everything downstream (parsing, patching, evaluation, the journal) is
the same whichever one produced the text.

Four failure kinds, because the controller must react to each differently:

* `ProposerError`: this one call failed after its retries because of what was asked or answered
  (prompt too long, empty answers, an answer cut off before it began). The controller journals it
  and the run goes on.
* `EndpointError`, a `ProposerError`: the endpoint itself failed after the retries (connection
  refused or reset, timeouts, HTTP 5xx, 429 beyond the retries, bodies that are not a chat
  completion). Nothing was learnt about the model's answer, so it is the harness's problem to
  journal, never an error to show the model in a fix prompt.
* `BudgetExhausted`: the money limit is reached; the run should stop cleanly. It is *not* a
  `ProposerError`, so a handler that journals-and-continues cannot swallow it by accident.
* `evaluator.errors.UserError`: a configuration mistake (missing key, rejected key, unknown
  model, unreachable endpoint at start-up); retrying cannot help, the user must act.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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
    """One answer and what it cost. `tokens_estimated` is True when the endpoint sent no usage.

    `finish_reason` is why the model stopped, as the endpoint said ("stop"; "length": cut off at
    the output limit, so the answer is incomplete), or None where nobody recorded it.
    """

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_s: float
    tokens_estimated: bool = False
    finish_reason: str | None = None


class Proposer(Protocol):
    """Turns a request into a response text in the shared format (NAME/DESCRIPTION/DIFF or CODE)."""

    name: str

    def propose(self, request: ProposalRequest) -> Proposal:
        """Answer one request, or raise ProposerError / BudgetExhausted / UserError (see module doc)."""
        ...


class ProposerError(Exception):
    """One proposal failed after its retries; a result to journal, not a reason to stop the run."""


class EndpointError(ProposerError):
    """The endpoint failed after the retries (network, HTTP status, malformed body): not the model's answer."""


class BudgetExhausted(Exception):
    """The configured spending limit is reached: no further call will be made."""


def prompt_hash(messages: Sequence[dict[str, str]]) -> str:
    """sha256 of the conversation as canonical JSON (sorted keys, no whitespace, UTF-8).

    Canonical so that the same conversation always hashes the same across processes and Python
    versions: replay looks recorded answers up by this hash.
    """
    canonical = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

"""One attempt's proposal stage: ask the proposer, parse, apply; on a patch error, ask again.

Runs on a worker thread and writes no shared state: it returns a `Proposed` record that the
controller (the single writer) journals. A patch that fails is sent back to the model in the same
conversation with the engine's exact error, up to `fix_attempts` times, instead of being skipped
silently (the peers' users' first complaint). So is a change that only rebuilds a program already
evaluated (`known` says which): every island starts from the seed, so the same first move is
proposed again and again, and each such answer would otherwise be a wasted attempt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from harness.store.candidate import code_hash
from harness.diff.patch import PatchResult, apply_edits
from harness.proposers.prompts import build_duplicate_message, build_fix_message
from harness.proposers.base import BudgetExhausted, Proposal, ProposalRequest, Proposer, ProposerError, prompt_hash
from harness.diff.response import Response, ResponseError, parse_response


@dataclass(frozen=True)
class Plan:
    """What the controller decided for an attempt before any model call."""

    attempt: int
    island: int
    parent_id: int
    parent_code: str
    messages: tuple[dict[str, str], ...]
    mate_id: int | None = None
    crossover: tuple[str, str] | None = None  # (mate's code, common ancestor's code)
    seed: int = 0


@dataclass(frozen=True)
class Call:
    """One model call: the conversation sent and the proposal received."""

    messages: tuple[dict[str, str], ...]
    prompt_hash: str
    proposal: Proposal


@dataclass(frozen=True)
class Proposed:
    """The outcome of the proposal stage. `code` (and its `code_hash`) is set only when a response
    applied cleanly to a program not evaluated yet."""

    plan: Plan
    status: str  # "applied", "parse_failed", "patch_failed", "duplicate", "proposer_error", "budget_exhausted"
    error: str | None = None
    calls: tuple[Call, ...] = ()
    response: Response | None = None
    patch: PatchResult | None = None
    code: str | None = None
    blocks: tuple[dict, ...] = field(default_factory=tuple)
    code_hash: str | None = None

    @property
    def model(self) -> str:
        return self.calls[-1].proposal.model if self.calls else ""

    @property
    def tokens(self) -> tuple[int, int]:
        return (sum(c.proposal.prompt_tokens for c in self.calls),
                sum(c.proposal.completion_tokens for c in self.calls))

    @property
    def cost(self) -> float:
        return sum(c.proposal.cost for c in self.calls)


def propose(plan: Plan, proposer: Proposer, fix_attempts: int,
            known: Callable[[str], str | None] = lambda _digest: None) -> Proposed:
    """Ask, parse and apply, retrying with the exact error; never raises for a bad answer.
    `known(code_hash)` names the program already evaluated that a new program repeats, or is None."""
    messages = plan.messages
    calls: list[Call] = []
    status, error, response, patch = "proposer_error", None, None, None
    for turn in range(fix_attempts + 1):
        hashed = prompt_hash(messages)
        request = ProposalRequest(messages=messages, prompt_hash=hashed, parent_code=plan.parent_code,
                                  crossover=plan.crossover, seed=plan.seed * 100 + turn)
        try:
            proposal = proposer.propose(request)
        except BudgetExhausted as exhausted:
            return Proposed(plan, "budget_exhausted", str(exhausted), tuple(calls), response, patch)
        except ProposerError as failed:
            return Proposed(plan, "proposer_error", str(failed), tuple(calls), response, patch)
        calls.append(Call(messages, hashed, proposal))
        try:
            response = parse_response(proposal.text)
        except ResponseError as bad:
            status, error, patch = "parse_failed", bad.reason, None
        else:
            patch = apply_edits(plan.parent_code, response)
            digest = code_hash(patch.text) if patch.ok else None
            twin = known(digest) if digest is not None else None
            if patch.ok and twin is None:
                return Proposed(plan, "applied", None, tuple(calls), response, patch, patch.text,
                                tuple(patch.to_dict()["outcomes"]), digest)
            status, error = ("duplicate", twin) if patch.ok else ("patch_failed", patch.summary())
        follow_up = build_duplicate_message(error) if status == "duplicate" else build_fix_message(error)
        messages = (*messages, {"role": "assistant", "content": proposal.text}, follow_up)
    blocks = tuple(patch.to_dict()["outcomes"]) if patch else ()
    return Proposed(plan, status, error, tuple(calls), response, patch, None, blocks)

"""The one record of an attempt, carried from its plan to its candidate.

The controller plans an `Attempt` (its `Plan`), a proposal thread fills in its model calls and the
program they produced (`harness.search.attempt.propose`), the evaluation executor's verdict is
added (`evaluated`), and the committed `Candidate` and the journal line are read off it
(`to_candidate`, `journal_entry`). Each stage returns a new frozen record with its part filled in,
so the controller's future maps hold Attempts and nothing else, and what is journaled, committed
and shown to the model all come from the same fields.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from evaluator.records import Evaluation
from harness.diff.response import Response
from harness.execution.executors import EvalJob, Suites
from harness.proposers.base import Proposal
from harness.store.candidate import Candidate
from harness.store.journal import Spend
from harness.store.status import MODEL_MISTAKES, Status


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

    @property
    def parent_ids(self) -> tuple[int, ...]:
        return (self.parent_id,) if self.mate_id is None else (self.parent_id, self.mate_id)


@dataclass(frozen=True)
class Call:
    """One model call: the conversation sent, the proposal received, and where the run filed the two
    texts (artifact paths, set when the controller journals the call; "" until then)."""

    number: int  # 1, 2... within the attempt (the first prompt, then each fix turn)
    messages: tuple[dict[str, str], ...]
    prompt_hash: str
    proposal: Proposal
    prompt_file: str = ""
    response_file: str = ""

    def record(self) -> dict[str, Any]:
        """The call as the journal records it: on its own call line, and in its attempt's `calls`."""
        p = self.proposal
        return {"call": self.number, "prompt_hash": self.prompt_hash, "prompt": self.prompt_file,
                "response": self.response_file, "model": p.model, "prompt_tokens": p.prompt_tokens,
                "completion_tokens": p.completion_tokens, "cost": p.cost, "latency_s": p.latency_s,
                "finish_reason": p.finish_reason, "tokens_estimated": p.tokens_estimated}


@dataclass(frozen=True)
class Attempt:
    """One attempt. `status` is None while it is only planned, APPLIED once a proposal produced a new
    program (`code`), then the evaluation's verdict (VALID, INVALID, SCREENED); or why it ended
    without one (PARSE_FAILED, PATCH_FAILED, DUPLICATE, ENDPOINT_ERROR, ...), with `error`.

    When a call fails after an answer that did not apply, `status`/`error` say why the call failed
    and `answer_status`/`answer_error` keep what was wrong with that answer: the harness's problem
    and the model's mistake are recorded apart, and only the latter is ever shown to the model.
    """

    plan: Plan
    status: Status | None = None
    error: str | None = None
    calls: tuple[Call, ...] = ()
    response: Response | None = None  # the last answer, parsed (None when it did not parse)
    code: str | None = None  # the new program, once a proposal applied
    code_hash: str | None = None
    blocks: tuple[dict[str, Any], ...] = ()  # the last answer's per-block patch outcomes
    answer_status: Status | None = None
    answer_error: str | None = None
    evaluation: Evaluation | None = None

    @property
    def number(self) -> int:
        return self.plan.attempt

    @property
    def model(self) -> str:
        return self.calls[-1].proposal.model if self.calls else ""

    @property
    def spend(self) -> Spend:
        return sum((Spend(c.proposal.prompt_tokens, c.proposal.completion_tokens, c.proposal.cost)
                    for c in self.calls), Spend())

    def cut_short(self, status: Status, error: str) -> Attempt:
        """The attempt ended by a failed call (no answer came): the last answer's verdict is kept."""
        return replace(self, status=status, error=error, answer_status=self.status, answer_error=self.error)

    def mistake(self) -> str | None:
        """What the model's own last answer did wrong (for later prompts to show it), or None when the
        attempt did not fail through the model: an endpoint or proposer failure is never its mistake."""
        if self.status in MODEL_MISTAKES:
            return self.error
        return self.answer_error if self.answer_status in MODEL_MISTAKES else None

    def job(self, suites: Suites, screen_floor: float | None) -> EvalJob:
        """The evaluation of the new program, as plain data for any executor."""
        assert self.code is not None, "only an applied attempt is evaluated"
        return EvalJob(self.code, f"attempt_{self.number:06d}.py", suites, screen_floor)

    def evaluated(self, status: str, evaluation: Evaluation) -> Attempt:
        """The executor's verdict (VALID, INVALID or SCREENED) and its evaluation."""
        return replace(self, status=Status(status), evaluation=evaluation, error=evaluation.error)

    def to_candidate(self, candidate_id: int, created_at: float) -> Candidate:
        """The evaluated program as the candidate the run commits."""
        assert self.response is not None and self.code is not None and self.code_hash is not None
        assert self.status is not None
        spent = self.spend
        return Candidate(
            id=candidate_id, parent_ids=self.plan.parent_ids, island=self.plan.island, name=self.response.name,
            description=self.response.description, code=self.code, code_hash=self.code_hash, status=self.status,
            evaluation=self.evaluation,
            model=self.model, prompt_tokens=spent.prompt_tokens, completion_tokens=spent.completion_tokens,
            cost=spent.cost, iteration=self.number, created_at=created_at)

    def journal_entry(self) -> dict[str, Any]:
        """The attempt's outcome line (a committed candidate's own fields take precedence there)."""
        spent = self.spend
        entry = {"attempt": self.number, "status": self.status, "error": self.error, "island": self.plan.island,
                 "parent_ids": list(self.plan.parent_ids), "model": self.model,
                 "prompt_tokens": spent.prompt_tokens, "completion_tokens": spent.completion_tokens,
                 "cost": spent.cost, "calls": [c.record() for c in self.calls], "blocks": list(self.blocks),
                 "name": self.response.name if self.response else None}
        if self.answer_status is not None:
            entry.update(answer_status=self.answer_status, answer_error=self.answer_error)
        return entry

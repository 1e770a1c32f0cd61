"""The asynchronous steady-state search loop: the single writer of the population and the run.

Up to `concurrency` attempts are in flight. An attempt is planned here (parent, island, prompt),
proposed on a worker (`harness.attempt.propose`), checked for duplicates here, evaluated on a
worker (isolated, see `evaluator.evaluate`), and recorded here: committed to the Git population
and added to the in-memory population the moment it finishes, freeing its slot.
"""
from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections import defaultdict, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from evaluator.evaluate import EvalOptions, evaluate
from evaluator.records import Evaluation
from evaluator.scenarios import Scenario
from harness import prompts
from harness.attempt import Plan, Proposed, propose
from harness.candidate import Candidate, code_hash
from harness.config import RunConfig
from harness.executors import LocalExecutor
from harness.population import Population
from harness.proposers.base import Proposer
from harness.store import RunStore

CROSSOVER_RATE = 0.1  # share of attempts that ask for a merge with a second parent, when one exists
FAILURES_SHOWN = 3  # last failed attempts on the lineage shown in the prompt


@dataclass(frozen=True)
class Suites:
    """What candidates are scored on: the run's suite, and the quick screen of the cascade."""

    name: str
    scenarios: tuple[Scenario, ...]
    options: EvalOptions
    quick: tuple[Scenario, ...] | None = None  # None: no cascade
    cascade_margin: float = 0.05


@dataclass(frozen=True)
class Recorded:
    """One attempt of an earlier run, as its journal recorded it, for `--proposer replay`: where it
    bred (island, parents) and the first conversation it sent (None when no call got an answer).

    Replaying these decisions, not re-deciding them, is what makes a replay reproduce the run:
    parent selection follows scores, and scores carry timing noise (runtime is part of
    combined_score), so a re-decided replay would drift at the first near-tie; and the prompt
    quotes the parent's measured runtime, so a rebuilt prompt would not hash like the recorded one.
    """

    island: int
    parent_ids: tuple[int, ...]
    messages: tuple[dict[str, str], ...] | None


@dataclass
class Tally:
    """Running counts for the progress bar and the summary."""

    attempts: int = 0
    evaluated: int = 0
    valid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    stopped_by: str = "iterations"


def _metrics(ev: Evaluation | None) -> dict[str, float]:
    if ev is None or not ev.valid:
        return {}
    return {"combined_score": ev.combined_score, "balancedness": ev.balancedness,
            "balancedness_slot": ev.balancedness_slot, "runtime_ms": ev.runtime_ms}


def evaluate_with_cascade(path: Path, suites: Suites, screen_floor: float | None) -> tuple[str, Evaluation]:
    """(status, evaluation). With a cascade, the quick suite screens first; only a valid program whose
    quick score is within the margin of `screen_floor` gets the full suite."""
    if suites.quick is not None:
        quick = evaluate(path, list(suites.quick), "quick", suites.options)
        if not quick.valid:
            return "invalid", quick
        if screen_floor is not None and quick.combined_score < screen_floor * (1 - suites.cascade_margin):
            return "screened", quick
    full = evaluate(path, list(suites.scenarios), suites.name, suites.options)
    if suites.quick is not None:
        full = replace(full, extra={**full.extra, "quick_combined_score": quick.combined_score})
    return ("valid" if full.valid else "invalid"), full


class Controller:
    def __init__(self, store: RunStore, config: RunConfig, population: Population, proposer: Proposer,
                 suites: Suites, on_progress: Callable[["Controller"], None] | None = None,
                 recording: Mapping[int, Recorded] | None = None) -> None:
        self.store, self.config, self.population, self.proposer = store, config, population, proposer
        self.suites = suites
        self.recording = recording or {}
        self.tally = Tally()
        self.on_progress = on_progress or (lambda _c: None)
        self._failures: dict[int, deque] = defaultdict(lambda: deque(maxlen=FAILURES_SHOWN))
        self._pending_hashes: set[str] = set()
        self._best_quick: float | None = None
        self._workdir = Path()
        self._stop = False
        for entry in store.load_journal():
            self.tally.prompt_tokens += int(entry.get("prompt_tokens") or 0)
            self.tally.completion_tokens += int(entry.get("completion_tokens") or 0)
            self.tally.cost += float(entry.get("cost") or 0.0)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> Tally:
        run = self.config.run
        for island in range(self.config.population.islands):  # every island has its branch from the start
            head = self.population.island_best(island)
            if head is not None:
                self.store.set_island_head(island, head)
        started = time.monotonic()
        executor = LocalExecutor(2 * run.concurrency)
        inflight: dict[Future, tuple[str, Any]] = {}
        self._workdir = Path(tempfile.mkdtemp(prefix="eplb-candidates-"))
        try:
            while True:
                while not self._stop and len(inflight) < run.concurrency and self._may_launch(started):
                    plan = self._plan()
                    inflight[executor.submit(propose, plan, self.proposer, run.fix_attempts,
                                             self._twin)] = ("propose", plan)
                if not inflight:
                    break
                done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    stage, payload = inflight.pop(future)
                    follow_up = self._finish(stage, payload, future)
                    if follow_up is not None:  # an applied proposal goes on to its evaluation
                        fn, fn_args, next_payload = follow_up
                        inflight[executor.submit(fn, *fn_args)] = ("evaluate", next_payload)
        finally:
            executor.shutdown()
            shutil.rmtree(self._workdir, ignore_errors=True)
        return self.tally

    def stop(self, reason: str) -> None:
        self._stop = True
        self.tally.stopped_by = reason

    def _may_launch(self, started: float) -> bool:
        run = self.config.run
        if self.store.next_attempt > run.iterations:
            return False
        if run.max_time_s is not None and time.monotonic() - started >= run.max_time_s:
            self.stop("max_time")
            return False
        if run.max_cost is not None and self.tally.cost >= run.max_cost:
            self.stop("max_cost")
            return False
        return True

    # -- planning --------------------------------------------------------------------------
    def _plan(self) -> Plan:
        attempt = self.store.begin_attempt()
        rng = random.Random(f"{self.config.run.seed}:{attempt}")
        recorded = self._replayable(self.recording.get(attempt))
        if recorded is not None:
            island = recorded.island
            parent, *mates = (self.population.get(i) for i in recorded.parent_ids)
            mate = mates[0] if mates else None
        else:
            island = self.population.island_for(attempt)
            parent = self.population.pick_parent(island)
            mate = self.population.pick_mate(parent, island) if rng.random() < CROSSOVER_RATE else None
        crossover = None
        if mate is not None:
            ancestor = self.population.common_ancestor(parent.id, mate.id)
            crossover = (mate.code, ancestor.code)
        # Filed before anything else happens, so an attempt cut short by a crash is still counted
        # (journaled "interrupted" at resume) and its number is never handed out twice.
        self.store.save_artifact(attempt, "plan", json.dumps(
            {"attempt": attempt, "island": island, "parent_ids": [parent.id] + ([mate.id] if mate else [])}))
        if recorded is not None and recorded.messages is not None:
            messages = recorded.messages  # replayed as sent, so it hashes like the recorded prompt
        else:
            messages = self._messages(parent, island)
        return Plan(attempt=attempt, island=island, parent_id=parent.id, parent_code=parent.code,
                    messages=messages, mate_id=mate.id if mate else None, crossover=crossover,
                    seed=self.config.run.seed * 1_000_003 + attempt)

    def _messages(self, parent: Candidate, island: int) -> tuple[dict[str, str], ...]:
        ctx = prompts.PromptContext(
            task=prompts.TASK_STATEMENT,
            parent=prompts.ProgramView(parent.name, parent.description, parent.code,
                                       _metrics(parent.evaluation),
                                       parent.evaluation.feedback if parent.evaluation else ""),
            inspirations=tuple(prompts.Inspiration(c.name, c.description, _metrics(c.evaluation), c.code)
                               for c in self.population.inspirations(parent, island)),
            failures=self._lineage_failures(parent),
        )
        prop = self.config.proposer
        ctx = prompts.fit_to_context(ctx, prop.context_tokens, prop.max_output_tokens)
        return tuple(prompts.build_messages(ctx))

    def _replayable(self, recorded: Recorded | None) -> Recorded | None:
        """The recorded decision when this run can follow it (its parents exist here and are valid)."""
        if recorded is None or not 0 <= recorded.island < self.config.population.islands:
            return None
        try:
            parents = [self.population.get(i) for i in recorded.parent_ids]
        except KeyError:
            return None
        return recorded if parents and all(p.valid for p in parents) else None

    def _lineage_failures(self, parent: Candidate) -> tuple[prompts.FailedAttempt, ...]:
        """The newest FAILURES_SHOWN failures, oldest first: failed evaluations on the lineage (from
        the population) merged by attempt number with this parent's recent unappliable answers."""
        failed = [(c.iteration, prompts.FailedAttempt(c.name, c.evaluation.error if c.evaluation else c.status))
                  for c in self.population.recent_failures(parent.id, FAILURES_SHOWN)]
        merged = sorted([*failed, *self._failures[parent.id]], key=lambda pair: pair[0])
        return tuple(failure for _, failure in merged[-FAILURES_SHOWN:])

    # -- finishing -------------------------------------------------------------------------
    def _finish(self, stage: str, payload: Any, future: Future) -> tuple | None:
        if stage == "propose":
            plan: Plan = payload
            try:
                proposed: Proposed = future.result()
            except Exception as error:  # a proposer bug must not kill the run: journal it
                proposed = Proposed(plan, "proposer_error", f"{type(error).__name__}: {error}")
            return self._proposed(proposed)
        proposed, calls = payload
        try:
            status, evaluation = future.result()
        except Exception as error:
            status, evaluation = "invalid", Evaluation.invalid(
                f"evaluator error: {type(error).__name__}: {error}", "", device=self.suites.options.device,
                sandbox=self.suites.options.limits.sandbox, suite=self.suites.name, heldout=False)
        self._record(proposed, calls, status, evaluation)
        return None

    def _save_calls(self, proposed: Proposed) -> list[dict[str, Any]]:
        records = []
        for call in proposed.calls:
            prompt = self.store.save_artifact(proposed.plan.attempt, "prompt", json.dumps(call.messages, indent=1))
            response = self.store.save_artifact(proposed.plan.attempt, "response", call.proposal.text)
            p = call.proposal
            records.append({"prompt_hash": call.prompt_hash, "prompt": prompt, "response": response,
                            "model": p.model, "prompt_tokens": p.prompt_tokens,
                            "completion_tokens": p.completion_tokens, "cost": p.cost, "latency_s": p.latency_s})
        return records

    def _count_tokens(self, proposed: Proposed) -> None:
        prompt_tokens, completion_tokens = proposed.tokens
        self.tally.prompt_tokens += prompt_tokens
        self.tally.completion_tokens += completion_tokens
        self.tally.cost += proposed.cost

    def _proposed(self, proposed: Proposed) -> tuple | None:
        """Journal a proposal that produced nothing to evaluate, or hand the new program on."""
        calls = self._save_calls(proposed)
        self._count_tokens(proposed)
        plan = proposed.plan
        if proposed.status == "budget_exhausted":
            self.stop("max_cost")
        if proposed.code is not None:
            digest = proposed.code_hash or code_hash(proposed.code)
            error = self._twin(digest)
            if error is None:
                self._pending_hashes.add(digest)
                path = self._workdir / f"attempt_{plan.attempt:06d}.py"
                path.write_text(proposed.code, encoding="utf-8")
                return evaluate_with_cascade, (path, self.suites, self._best_quick), (proposed, calls)
            status = "duplicate"  # a twin that appeared while this proposal was being made
        else:
            status, error = proposed.status, proposed.error
            if proposed.response is not None or proposed.calls:
                self._failures[plan.parent_id].append((plan.attempt, prompts.FailedAttempt(
                    proposed.response.name if proposed.response else "unparsable answer", error or status,
                    proposed.calls[-1].proposal.text if proposed.calls else None)))
        self._journal_only(proposed, calls, status, error)
        return None

    def _twin(self, digest: str) -> str | None:
        """What the program with this code hash repeats: a candidate already evaluated or one being
        evaluated; None if it is new. Also called from proposal workers: it only reads (a dict
        lookup and a set membership test)."""
        twin = self.population.seen(digest)
        if twin is not None:
            return f"same program as candidate {twin.id} ({twin.name})"
        return "same program as one being evaluated" if digest in self._pending_hashes else None

    def _journal_only(self, proposed: Proposed, calls: list[dict], status: str, error: str | None) -> None:
        plan = proposed.plan
        prompt_tokens, completion_tokens = proposed.tokens
        self.store.append_journal({
            "attempt": plan.attempt, "status": status, "error": error, "island": plan.island,
            "parent_ids": [plan.parent_id] + ([plan.mate_id] if plan.mate_id is not None else []),
            "model": proposed.model, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cost": proposed.cost, "calls": calls, "blocks": list(proposed.blocks),
            "name": proposed.response.name if proposed.response else None})
        self.tally.attempts += 1
        self.on_progress(self)

    def _record(self, proposed: Proposed, calls: list[dict], status: str, evaluation: Evaluation) -> None:
        """Commit an evaluated candidate and let it join the population at once."""
        plan, response = proposed.plan, proposed.response
        assert response is not None and proposed.code is not None
        digest = proposed.code_hash or code_hash(proposed.code)
        prompt_tokens, completion_tokens = proposed.tokens
        parents = (plan.parent_id,) + ((plan.mate_id,) if plan.mate_id is not None else ())
        candidate = Candidate(
            id=self.store.next_candidate_id, parent_ids=parents, island=plan.island, name=response.name,
            description=response.description, code=proposed.code, code_hash=digest,
            status=status, evaluation=evaluation, model=proposed.model, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, cost=proposed.cost, iteration=plan.attempt,
            created_at=time.time())
        candidate = self.store.commit(candidate, {"calls": calls, "blocks": list(proposed.blocks)})
        self._pending_hashes.discard(candidate.code_hash)
        migrations = self.population.add(candidate)
        if status == "valid" and self.suites.quick is not None:
            quick = evaluation.extra.get("quick_combined_score")
            if quick is not None:
                self._best_quick = max(self._best_quick or 0.0, quick)
        for island in {plan.island, *(m.target for m in migrations)}:
            head = self.population.island_best(island)
            if head is not None:
                self.store.set_island_head(island, head)
        best = self.population.best()
        if best is not None:
            self.store.set_best(best)
        self.tally.attempts += 1
        self.tally.evaluated += 1
        self.tally.valid += candidate.valid
        self.on_progress(self)

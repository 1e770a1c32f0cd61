"""The asynchronous steady-state search loop: the single writer of the population and the run.

An attempt is planned here (parent, island, prompt), proposed on a thread
(`harness.search.attempt.propose`), checked for duplicates here, evaluated by the evaluation executor
(isolated, on a worker slot of its own: `harness.execution.executors`), and recorded here: committed to the Git
population and added to the in-memory population the moment it finishes.

Two limits, because proposals wait on a model and evaluations on the machine: up to `concurrency`
proposals in flight, and at most `workers` evaluations at once (the executor's slots). A new
attempt is planned only while fewer than max(concurrency, workers) attempts are in flight: enough
to keep every slot busy while the next proposal is made, and no queue of stale proposals piling up
in front of busy workers (parents are picked from a population that is never far behind). With
one of each, attempts run one after another, as a reproducible run needs.
"""
from __future__ import annotations

import json
import random
import time
from collections import defaultdict, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from evaluator.records import Evaluation
from harness.proposers import prompts
from harness.search.attempt import Plan, Proposed, propose
from harness.store.candidate import Candidate, code_hash
from harness.config.settings import RunConfig
from harness.execution.executors import EvalJob, Evaluations, LocalExecutor, Suites, failed
from harness.execution.local_slots import LocalEvaluations
from harness.search.population import Population
from harness.proposers.base import Proposer
from harness.store.run_store import RunStore

CROSSOVER_RATE = 0.1  # share of attempts that ask for a merge with a second parent, when one exists
FAILURES_SHOWN = 3  # last failed attempts on the lineage shown in the prompt


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


class Controller:
    """`evaluations`: where candidates are evaluated (the caller shuts it down); None: local worker
    slots made for this run (`[run] workers`) and shut down at its end."""

    def __init__(self, store: RunStore, config: RunConfig, population: Population, proposer: Proposer,
                 suites: Suites, on_progress: Callable[["Controller"], None] | None = None,
                 recording: Mapping[int, Recorded] | None = None,
                 evaluations: Evaluations | None = None) -> None:
        self.store, self.config, self.population, self.proposer = store, config, population, proposer
        self.suites = suites
        self.evaluations = evaluations
        self.recording = recording or {}
        self.tally = Tally()
        self.on_progress = on_progress or (lambda _c: None)
        self._failures: dict[int, deque] = defaultdict(lambda: deque(maxlen=FAILURES_SHOWN))
        self._pending_hashes: set[str] = set()
        self._best_quick: float | None = None
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
        proposals = LocalExecutor(run.concurrency)
        options = self.suites.options
        evaluations = self.evaluations or LocalEvaluations.on_this_machine(options.device, options.limits.threads,
                                                                           run.workers)
        proposing: dict[Future, Plan] = {}
        evaluating: dict[Future, tuple[Proposed, list[dict]]] = {}
        try:
            while True:
                while (not self._stop and len(proposing) < run.concurrency
                       and len(proposing) + len(evaluating) < max(run.concurrency, evaluations.slots)
                       and self._may_launch(started)):
                    plan = self._plan()
                    proposing[proposals.submit(propose, plan, self.proposer, run.fix_attempts, self._twin)] = plan
                if not proposing and not evaluating:
                    break
                done, _ = wait([*proposing, *evaluating], timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    if future in proposing:
                        job = self._proposed(self._proposal(proposing.pop(future), future))
                        if job is not None:  # an applied proposal goes on to its evaluation
                            evaluating[evaluations.submit(job[0])] = job[1]
                    else:
                        self._evaluated(*evaluating.pop(future), future)
        finally:
            proposals.shutdown()
            if evaluations is not self.evaluations:
                evaluations.shutdown()
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
    @staticmethod
    def _proposal(plan: Plan, future: Future) -> Proposed:
        try:
            return future.result()
        except Exception as error:  # a proposer bug must not kill the run: journal it
            return Proposed(plan, "proposer_error", f"{type(error).__name__}: {error}")

    def _evaluated(self, proposed: Proposed, calls: list[dict], future: Future) -> None:
        try:
            status, evaluation = future.result()
        except Exception as error:  # an evaluator bug must not kill the run: the candidate fails
            status, evaluation = failed(self.suites, f"evaluator error: {type(error).__name__}: {error}")
        self._record(proposed, calls, status, evaluation)

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

    def _proposed(self, proposed: Proposed) -> tuple[EvalJob, tuple[Proposed, list[dict]]] | None:
        """Journal a proposal that produced nothing to evaluate, or hand the new program on: its
        evaluation job, and what recording it needs."""
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
                job = EvalJob(proposed.code, f"attempt_{plan.attempt:06d}.py", self.suites, self._best_quick)
                return job, (proposed, calls)
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

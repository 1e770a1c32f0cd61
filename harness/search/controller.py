"""The asynchronous steady-state search loop: the single writer of the population and the run.

An attempt is planned here (parent, island, prompt), proposed on a thread
(`harness.search.attempt.propose`), checked for duplicates here, evaluated by the evaluation executor
(isolated, on a worker slot of its own: `harness.execution.executors`), and recorded here: committed to the Git
population and added to the in-memory population the moment it finishes. One `Attempt` record
travels that whole way; the future maps below hold Attempts, and the journal line and the commit
are read off them.

Two limits, because proposals wait on a model and evaluations on the machine: up to `concurrency`
proposals in flight, and at most `workers` evaluations at once (the executor's slots). A new
attempt is planned only while fewer than max(concurrency, workers) attempts are in flight: enough
to keep every slot busy while the next proposal is made, and no queue of stale proposals piling up
in front of busy workers (parents are picked from a population that is never far behind). With
one of each, attempts run one after another, as a reproducible run needs.

Model calls are journaled from the proposal threads as they return (`_journal_call`), under a
lock that every write to the run takes, so a call that completed is in the journal, with what it
cost, even if Ctrl-C abandons its attempt a moment later; the run's totals (`Tally.spent`, and so
`max_cost`) count each call then, and only then.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace

from harness.config.settings import RunConfig
from harness.execution.executors import Evaluations, LocalExecutor, Suites, failed
from harness.proposers import prompts
from harness.proposers.base import Proposer
from harness.search.attempt import CUT_OFF, propose
from harness.search.attempt_record import Attempt, Call, Plan
from harness.search.population import Population
from harness.search.recording import Recorded
from harness.store import journal
from harness.store.candidate import Candidate, metrics
from harness.store.journal import Spend
from harness.store.run_store import RunStore
from harness.store.status import Status

CROSSOVER_RATE = 0.1  # share of attempts that ask for a merge with a second parent, when one exists
FAILURES_SHOWN = 3  # last failed attempts on the lineage shown in the prompt


@dataclass
class Tally:
    """Running counts for the progress display and the summary: `spent` is the whole run's (rebuilt
    from the journal at start), the rest this session's."""

    attempts: int = 0
    evaluated: int = 0
    valid: int = 0
    spent: Spend = Spend()
    calls: int = 0
    cut_off: int = 0  # calls whose answer stopped at the output limit
    stopped_by: str = "iterations"


class Controller:
    """`evaluations`: where candidates are evaluated; the caller makes it and shuts it down."""

    def __init__(self, store: RunStore, config: RunConfig, population: Population, proposer: Proposer,
                 suites: Suites, evaluations: Evaluations, *,
                 on_progress: Callable[[Controller], None] | None = None,
                 recording: Mapping[int, Recorded] | None = None) -> None:
        self.store, self.config, self.population, self.proposer = store, config, population, proposer
        self.suites = suites
        self.evaluations = evaluations
        self.recording = recording or {}
        self.tally = Tally(spent=sum(journal.spend(store.load_journal()).values(), Spend()))
        self.on_progress = on_progress or (lambda _c: None)
        self._failures: dict[int, deque] = defaultdict(lambda: deque(maxlen=FAILURES_SHOWN))
        self._pending_hashes: set[str] = set()
        self._best_quick: float | None = None
        self._stop = False
        self._writing = threading.Lock()  # proposal threads journal calls: every write to the run takes it
        self._finished = False  # set when run() returns: the run directory is the caller's again

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> Tally:
        run = self.config.run
        for island in range(self.config.population.islands):  # every island has its branch from the start
            head = self.population.island_best(island)
            if head is not None:
                self.store.set_island_head(island, head)
        started = time.monotonic()
        proposals = LocalExecutor(run.concurrency)
        proposing: dict[Future, Attempt] = {}
        evaluating: dict[Future, Attempt] = {}
        try:
            while True:
                while (not self._stop and len(proposing) < run.concurrency
                       and len(proposing) + len(evaluating) < max(run.concurrency, self.evaluations.slots)
                       and self._may_launch(started)):
                    planned = self._plan()
                    proposing[proposals.submit(self._propose, planned)] = planned
                if not proposing and not evaluating:
                    break
                done, _ = wait([*proposing, *evaluating], timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    if future in proposing:
                        applied = self._proposed(_outcome(proposing.pop(future), future))
                        if applied is not None:  # a new program goes on to its evaluation
                            evaluating[self.evaluations.submit(applied.job(self.suites, self._best_quick))] = applied
                    else:
                        self._record(self._evaluation(evaluating.pop(future), future))
        finally:
            proposals.shutdown()
            with self._writing:  # a call still being journaled finishes; later ones are not written
                self._finished = True
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
        if run.max_cost is not None and self.tally.spent.cost >= run.max_cost:
            self.stop("max_cost")
            return False
        return True

    # -- planning --------------------------------------------------------------------------
    def _plan(self) -> Attempt:
        number = self.store.begin_attempt()
        rng = random.Random(f"{self.config.run.seed}:{number}")
        recorded = self._replayable(self.recording.get(number))
        if recorded is not None:
            island = recorded.island
            parent, *mates = (self.population.get(i) for i in recorded.parent_ids)
            mate = mates[0] if mates else None
        else:
            island = self.population.island_for(number)
            parent = self.population.pick_parent(island)
            mate = self.population.pick_mate(parent, island) if rng.random() < CROSSOVER_RATE else None
        crossover = None
        if mate is not None:
            ancestor = self.population.common_ancestor(parent.id, mate.id)
            crossover = (mate.code, ancestor.code)
        # Filed before anything else happens, so an attempt cut short by a crash is still counted
        # (journaled "interrupted" at resume) and its number is never handed out twice.
        self.store.save_artifact(number, "plan", json.dumps(
            {"attempt": number, "island": island, "parent_ids": [parent.id] + ([mate.id] if mate else [])}))
        if recorded is not None and recorded.messages is not None:
            messages = recorded.messages  # replayed as sent, so it hashes like the recorded prompt
        else:
            messages = self._messages(parent, island)
        return Attempt(Plan(attempt=number, island=island, parent_id=parent.id, parent_code=parent.code,
                            messages=messages, mate_id=mate.id if mate else None, crossover=crossover,
                            seed=self.config.run.seed * 1_000_003 + number))

    def _messages(self, parent: Candidate, island: int) -> tuple[dict[str, str], ...]:
        ctx = prompts.PromptContext(
            task=prompts.task_statement(self.config.evaluator.objective),
            parent=prompts.ProgramView(parent.name, parent.description, parent.code, metrics(parent.evaluation),
                                       parent.evaluation.feedback if parent.evaluation else ""),
            inspirations=tuple(prompts.Inspiration(c.name, c.description, metrics(c.evaluation), c.code)
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
        failed = [(c.iteration, prompts.FailedAttempt(c.name, (c.evaluation and c.evaluation.error) or c.status))
                  for c in self.population.recent_failures(parent.id, FAILURES_SHOWN)]
        merged = sorted([*failed, *self._failures[parent.id]], key=lambda pair: pair[0])
        return tuple(failure for _, failure in merged[-FAILURES_SHOWN:])

    # -- proposing (on a proposal thread) ------------------------------------------------
    def _propose(self, planned: Attempt) -> Attempt:
        return propose(planned, self.proposer, self.config.run.fix_attempts,
                       max_output_tokens=self.config.proposer.max_output_tokens, known=self._twin,
                       on_call=self._journal_call)

    def _journal_call(self, attempt: Attempt, call: Call) -> Call:
        """File a call's texts, journal it and count what it cost, the moment it returns."""
        with self._writing:
            if self._finished:
                return call
            number, proposal = attempt.number, call.proposal
            filed = replace(call, prompt_file=self.store.save_artifact(number, "prompt",
                                                                       json.dumps(call.messages, indent=1)),
                            response_file=self.store.save_artifact(number, "response", proposal.text))
            self.store.journal_call(number, filed.record())
            self.tally.spent += Spend(proposal.prompt_tokens, proposal.completion_tokens, proposal.cost)
            self.tally.calls += 1
            self.tally.cut_off += proposal.finish_reason == CUT_OFF
            return filed

    def _twin(self, digest: str) -> str | None:
        """What the program with this code hash repeats: a candidate already evaluated or one being
        evaluated; None if it is new. Also called from proposal workers: it only reads (a dict
        lookup and a set membership test)."""
        twin = self.population.seen(digest)
        if twin is not None:
            return f"same program as candidate {twin.id} ({twin.name})"
        return "same program as one being evaluated" if digest in self._pending_hashes else None

    # -- finishing -------------------------------------------------------------------------
    def _proposed(self, attempt: Attempt) -> Attempt | None:
        """Hand a new program on to its evaluation, or journal an attempt that produced none."""
        if attempt.status is Status.BUDGET_EXHAUSTED:
            self.stop("max_cost")
        if attempt.status is Status.APPLIED and attempt.code_hash is not None:
            twin = self._twin(attempt.code_hash)
            if twin is None:
                self._pending_hashes.add(attempt.code_hash)
                return attempt
            attempt = replace(attempt, status=Status.DUPLICATE, error=twin)  # a twin appeared meanwhile
        else:
            self._remember_failure(attempt)
        with self._writing:
            self.store.append_journal(attempt.journal_entry())
        self._finish_attempt()
        return None

    def _remember_failure(self, attempt: Attempt) -> None:
        """Keep the model's own mistake for the next prompts on this parent (never a harness failure)."""
        mistake = attempt.mistake()
        if mistake is not None:
            self._failures[attempt.plan.parent_id].append((attempt.number, prompts.FailedAttempt(
                attempt.response.name if attempt.response else "unparsable answer", mistake,
                attempt.calls[-1].proposal.text if attempt.calls else None)))

    def _evaluation(self, attempt: Attempt, future: Future) -> Attempt:
        try:
            status, evaluation = future.result()
        except Exception as error:  # an evaluator bug must not kill the run: the candidate fails
            status, evaluation = failed(self.suites, f"evaluator error: {type(error).__name__}: {error}")
        return attempt.evaluated(status, evaluation)

    def _record(self, attempt: Attempt) -> None:
        """Commit an evaluated candidate and let it join the population at once."""
        with self._writing:
            candidate = self.store.commit(attempt.to_candidate(self.store.next_candidate_id, time.time()),
                                          attempt.journal_entry())
        self._pending_hashes.discard(candidate.code_hash)
        migrations = self.population.add(candidate)
        quick = attempt.evaluation.extra.get("quick_combined_score") if attempt.evaluation else None
        if candidate.status == Status.VALID and self.suites.quick is not None and quick is not None:
            self._best_quick = max(self._best_quick or 0.0, quick)
        for island in {attempt.plan.island, *(m.target for m in migrations)}:
            head = self.population.island_best(island)
            if head is not None:
                self.store.set_island_head(island, head)
        best = self.population.best()
        if best is not None:
            self.store.set_best(best)
        self.tally.evaluated += 1
        self.tally.valid += candidate.valid
        self._finish_attempt()

    def _finish_attempt(self) -> None:
        self.tally.attempts += 1
        self.on_progress(self)


def _outcome(planned: Attempt, future: Future) -> Attempt:
    """The proposal stage's result; a bug in it must not kill the run: the attempt is journaled."""
    try:
        return future.result()
    except Exception as error:
        return planned.cut_short(Status.PROPOSER_ERROR, f"{type(error).__name__}: {error}")

"""Turning a RunConfig into the live parts of a run: proposer, evaluation executor, suites, seed
candidate, population.

Shared by `run` (a new run) and `resume` (the same run again), so both build identical parts.
"""
from __future__ import annotations

import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from evaluator.errors import UserError
from evaluator.evaluate import EvalOptions, resolve_device
from evaluator.records import Evaluation
from evaluator.sandbox.candidate_process import Limits
from evaluator.workloads.scenarios import new_secret, suite
from harness.config.settings import RunConfig
from harness.execution.executors import EvalJob, Evaluations, Suites
from harness.execution.local_slots import LocalEvaluations
from harness.proposers.base import Proposer
from harness.proposers.mutate import MutateProposer
from harness.proposers.replay import ReplayProposer
from harness.search.population import Population
from harness.search.recording import Recorded, read_recording
from harness.store.candidate import Candidate, code_hash
from harness.store.run_store import RunStore, resolve_run
from harness.store.status import Status
from seed_program import SEED_PATH

OPENAI_API_BASE = "https://api.openai.com/v1"
SEED_DESCRIPTION = ("DeepSeek's EPLB algorithm: hierarchical (groups to nodes, replicas within nodes, "
                    "physical experts to GPUs) with greedy balanced packing and D'Hondt replication.")


def make_proposer(config: RunConfig, check: bool = True) -> Proposer:
    """The configured proposer; an LLM endpoint is probed once now, not hours into the run."""
    prop = config.proposer
    if prop.kind == "mutate":
        return MutateProposer()
    if prop.kind == "replay":
        return ReplayProposer(resolve_run(prop.replay_from or "", config.run.runs_dir))
    from harness.proposers.llm import LLMOptions, LLMProposer  # openai costs 0.6 s to import: only when used

    options = LLMOptions(
        models=tuple((m.name, m.weight) for m in prop.models), api_base=prop.api_base or OPENAI_API_BASE,
        api_key_env=prop.api_key_env, timeout_s=prop.request_timeout_s, retries=prop.max_retries,
        prices={name: (p.prompt_per_mtok, p.completion_per_mtok) for name, p in prop.prices.items()},
        max_cost=config.run.max_cost, temperature=prop.temperature, max_output_tokens=prop.max_output_tokens)
    proposer = LLMProposer(options)
    if check:
        proposer.check()
    return proposer


def make_evaluations(config: RunConfig) -> Evaluations:
    """Where this run's evaluations go: local worker slots, or Ray tasks (the optional extra)."""
    run, ev = config.run, config.evaluator
    if run.executor == "local":
        return LocalEvaluations.on_this_machine(ev.device, ev.threads, run.workers)
    try:
        import ray  # noqa: F401 -- only to say clearly when the extra is missing
    except ImportError as error:
        raise UserError(f"executor 'ray' needs Ray, which cannot be imported here ({error}); install the extra "
                        f"with pip install -e \".[ray]\" (on this machine and every Ray worker)") from None
    from harness.execution.ray_executor import RayEvaluations

    return RayEvaluations.connect(run.ray_address, ev.device, ev.threads, run.workers)


def eval_options(config: RunConfig, seed: Evaluation | None = None, device: str | None = None) -> EvalOptions:
    """`device`: where candidates run, as the executor resolved it; None: this machine's."""
    ev = config.evaluator
    device = device or resolve_device(ev.device, "[evaluator] device")
    limits = Limits(deadline_s=ev.deadline_s, call_timeout_s=ev.call_timeout_s, memory_mb=ev.memory_mb,
                    threads=ev.threads, sandbox=ev.sandbox, max_processes=ev.max_processes)
    seed_runtimes = {s.name: s.runtime_ms for s in seed.scenarios} if seed is not None else None
    return EvalOptions(device=device, rebalance_period_s=ev.rebalance_period_s, limits=limits,
                       seed_runtime_ms=seed_runtimes, normalise_timing=ev.timing == "normalised",
                       objective=ev.objective)


def make_suites(config: RunConfig, secret: int | None, seed: Evaluation | None = None,
                device: str | None = None) -> Suites:
    """The run's suites, with window dynamics drawn from the run's `secret` (None: the published windows):
    a candidate cannot regenerate windows it has not been given."""
    ev = config.evaluator
    quick = tuple(suite("quick", secret)) if ev.cascade and ev.suite != "quick" else None
    return Suites(name=ev.suite, scenarios=tuple(suite(ev.suite, secret)), options=eval_options(config, seed, device),
                  quick=quick, cascade_margin=ev.cascade_margin)


def run_secret(config: RunConfig) -> int | None:
    """A new run's window secret: a fresh one, or, for a replay, the recorded run's (so its scores compare)."""
    if config.proposer.kind == "replay":
        with RunStore.open(resolve_run(config.proposer.replay_from or "", config.run.runs_dir), readonly=True) as store:
            return store.secret
    return new_secret()


def evaluate_seed(config: RunConfig, evaluations: Evaluations, secret: int | None) -> Candidate:
    """The root of every run: the shipped seed program, evaluated on the run's full suite where its
    candidates will be (the same kind of worker, so their speeds compare)."""
    suites = replace(make_suites(config, secret, device=evaluations.device), quick=None)
    print(f"evaluating the seed on the '{suites.name}' suite ...", file=sys.stderr)
    code = SEED_PATH.read_text(encoding="utf-8")
    _, evaluation = evaluations.submit(EvalJob(code, SEED_PATH.name, suites)).result()
    if not evaluation.valid:
        raise UserError(f"the seed program failed to evaluate ({evaluation.error}); check the evaluator "
                        f"settings (e.g. call_timeout_s) in the config")
    evaluation = replace(evaluation, speedup_vs_seed=1.0)
    return Candidate(id=0, parent_ids=(), island=0, name="seed", description=SEED_DESCRIPTION, code=code,
                     code_hash=code_hash(code), status=Status.VALID, evaluation=evaluation, model="",
                     prompt_tokens=0, completion_tokens=0, cost=0.0, iteration=0, created_at=time.time())


def make_population(config: RunConfig, candidates: list[Candidate], next_attempt: int) -> Population:
    """Rebuilt from the committed candidates; the generator is seeded by the run seed and the attempt
    the run continues from, so a resumed run is as reproducible as a fresh one."""
    rng = random.Random(f"{config.run.seed}:population:{next_attempt}")
    return Population.from_candidates(config.population, candidates, rng)


def load_recording(config: RunConfig) -> dict[int, Recorded] | None:
    """For `--proposer replay`: the decisions and first prompts of the run being replayed, by attempt
    (None for other proposers). The recorded answers themselves are the replay proposer's."""
    if config.proposer.kind != "replay":
        return None
    return read_recording(resolve_run(config.proposer.replay_from or "", config.run.runs_dir))


def run_path(config: RunConfig) -> Path:
    return Path(config.run.runs_dir) / (config.run.name or time.strftime("run-%Y%m%d-%H%M%S"))

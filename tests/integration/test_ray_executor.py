"""Evaluations as Ray tasks, on a real local Ray instance (`ray.init(num_cpus=2)`).

A task evaluates the program's text like a local slot does; a task whose worker is killed
mid-evaluation is retried once, then its candidate is committed invalid with a reason naming the
lost worker, and the run goes on; a run killed with tasks in flight resumes on Ray and then on the
local executor, in the same directory format. Without Ray, asking for it is one line (exit 2).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from test_executors import TINY, VECTORISED, depth
from test_run_command import EPLB, ROOT, attempts_on_disk, candidate_refs, cli, git, outcome_lines, spawn, wait_for

from evaluator.evaluate import EvalOptions
from evaluator.sandbox import isolation
from harness.cli.run_setup import SEED_DESCRIPTION, eval_options, make_population
from harness.config.settings import dump_toml, load_config
from harness.execution.executors import EvalJob, Suites
from harness.execution.local_slots import LocalEvaluations
from harness.proposers.base import Proposal, ProposalRequest
from harness.proposers.mutate import format_response
from harness.search.controller import Controller
from harness.store.candidate import Candidate, code_hash
from harness.store.run_store import RunStore
from harness.store.status import Status
from seed_program import SEED_PATH

ANCHOR = "    weight = weight.detach().float().cpu()\n"  # a line of the seed's EVOLVE block
TASK_TITLE = "ray::evaluate_task"  # what Ray calls a worker process while it runs our task


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def ray_evaluations(workers: int | None = None):
    from harness.execution.ray_executor import RayEvaluations

    return RayEvaluations.connect(None, "cpu", 1, workers)


def test_without_ray_asking_for_it_is_one_line_and_no_run(tmp_path):
    script = ("import sys; sys.modules['ray'] = None  # as if the extra were not installed\n"
              "from harness.cli.main import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, "run", "--executor", "ray", "--name", "x", "--runs-dir",
                           str(tmp_path), "--suite", "quick"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("eplb-evolve: error: executor 'ray' needs Ray") and 'pip install -e ".[ray]"' in line
    assert list(tmp_path.iterdir()) == []


def test_a_head_address_where_nothing_answers_is_one_line_at_once(tmp_path):
    pytest.importorskip("ray")
    started = time.monotonic()
    result = subprocess.run([*EPLB, "run", "--executor", "ray", "--ray-address", "127.0.0.1:1", "--name", "x",
                             "--runs-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and time.monotonic() - started < 30  # Ray alone would retry for minutes
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("eplb-evolve: error: --ray-address 127.0.0.1:1: nothing answers there")
    assert list(tmp_path.iterdir()) == []


def test_a_ray_task_evaluates_the_program_text_as_a_local_slot_does(ray_instance):
    evaluations = ray_evaluations()
    assert (evaluations.slots, evaluations.device) == (2, "cpu")  # num_cpus=2 / threads=1
    job = EvalJob(VECTORISED.read_text(), "vectorised.py", Suites("tiny", (TINY,), EvalOptions()))
    try:
        remote_status, remote = evaluations.submit(job).result(timeout=120)
    finally:
        evaluations.shutdown()
    assert ray_instance.is_initialized()  # joined, not started here: left running
    local = LocalEvaluations.on_this_machine("cpu", 1, 1)
    try:
        local_status, here = local.submit(job).result(timeout=120)
    finally:
        local.shutdown()
    assert remote_status == local_status == Status.VALID and remote.valid
    assert [w.balancedness for w in remote.scenarios[0].windows] == [w.balancedness for w in here.scenarios[0].windows]
    assert (remote.suite, remote.device, remote.sandbox) == ("tiny", "cpu", isolation.resolve_sandbox("auto"))


class Scripted:
    """The model's stand-in: each answer inserts the next line after ANCHOR in the parent."""

    name = "scripted"

    def __init__(self, *lines: str) -> None:
        self._lines = iter(lines)

    def propose(self, request: ProposalRequest) -> Proposal:
        line = next(self._lines)
        text = format_response(line.split()[0], f"Adds `{line}`.", ((ANCHOR, ANCHOR + f"    {line}\n"),))
        return Proposal(text=text, model="scripted", prompt_tokens=0, completion_tokens=0, cost=0.0, latency_s=0.0)


def task_workers() -> set[int]:
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().startswith(TASK_TITLE.encode()):
                    found.add(int(entry))
        except OSError:
            continue
    return found


def kill_workers_mid_evaluation(count: int, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL `count` distinct Ray workers, each while a candidate runs below it."""
    while len(killed) < count and not stop.is_set():
        for pid in task_workers() - set(killed):
            if depth(pid) >= 3:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)


def test_a_killed_worker_is_retried_once_then_the_candidate_is_invalid_and_the_run_goes_on(tmp_path, ray_instance):
    config = load_config(None, {"evaluator.device": "cpu", "run.iterations": 2, "run.workers": 1,
                                "population.islands": 1, "run.executor": "ray"})
    evaluations = ray_evaluations(workers=1)  # one at a time: the killer knows whose worker it kills
    suites = Suites("tiny", (TINY,), eval_options(config, device="cpu"))
    seed_code = SEED_PATH.read_text()
    _, seed_eval = evaluations.submit(EvalJob(seed_code, "eplb.py", suites)).result(timeout=120)
    seed = Candidate(id=0, parent_ids=(), island=0, name="seed", description=SEED_DESCRIPTION, code=seed_code,
                     code_hash=code_hash(seed_code), status=Status.VALID, evaluation=seed_eval, model="",
                     prompt_tokens=0, completion_tokens=0, cost=0.0, iteration=0, created_at=time.time())
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_workers_mid_evaluation, args=(2, killed, stop), daemon=True)
    killer.start()
    try:
        with RunStore.create(tmp_path / "run", dump_toml(config), seed) as store:
            proposer = Scripted("import time; time.sleep(120)", "_variant = 1")
            Controller(store, config, make_population(config, [seed], store.next_attempt), proposer, suites,
                       evaluations).run()
            candidates = {c.iteration: c for c in store.load_candidates()}
    finally:
        stop.set()
        evaluations.shutdown()
    assert len(killed) == 2  # the first try and its one retry, on another worker process
    lost = candidates[1]
    assert lost.status is Status.INVALID and "evaluation lost: the Ray worker running it died" in lost.evaluation.error
    assert "WorkerCrashedError" in lost.evaluation.error
    assert "Status: invalid" in git(tmp_path / "run", "log", "-1", "--format=%B", lost.commit)
    assert candidates[2].status is Status.VALID  # the run went on


def test_a_ray_run_killed_with_tasks_in_flight_resumes_on_ray_then_locally(tmp_path, ray_instance):
    address = ray_instance.get_runtime_context().gcs_address
    name, run, log = "moving", tmp_path / "moving", tmp_path / "run.log"
    proc = spawn(["run", "--name", name, "--runs-dir", str(tmp_path), "--suite", "quick", "--iterations", "40",
                  "--executor", "ray", "--ray-address", address, "--concurrency", "2", "--no-progress"], log)

    def in_flight() -> set[int]:
        begun = attempts_on_disk(run)
        return begun - {e["attempt"] for e in outcome_lines(run)} if (run / "journal.jsonl").exists() else set()

    wait_for("a candidate, and attempts in flight", lambda: (run / ".git/refs/candidates/000001").exists()
             and bool(in_flight()), proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    cut_short = in_flight()
    frontier = max(attempts_on_disk(run))

    on_ray = cli("resume", name, "--runs-dir", tmp_path, "--iterations", frontier + 2, "--no-progress")
    assert on_ray.code == 0, on_ray
    assert 'executor = "ray"' in (run / "config.toml").read_text()
    locally = cli("resume", name, "--runs-dir", tmp_path, "--iterations", frontier + 4, "--executor", "local",
                  "--no-progress")
    assert locally.code == 0, locally
    assert 'executor = "local"' in (run / "config.toml").read_text()

    entries = outcome_lines(run)
    assert sorted(e["attempt"] for e in entries) == list(range(frontier + 5))  # the seed's 0, then each once
    statuses = {e["attempt"]: e["status"] for e in entries}
    assert {statuses[a] for a in cut_short} == {"interrupted"}  # begun before the kill, never finished
    refs = candidate_refs(run)
    assert sorted(e["candidate_id"] for e in entries if e.get("candidate_id") is not None) == list(refs)
    assert sorted(p.name for p in run.iterdir()) == [".git", ".gitignore", "artifacts", "attempt.json",
                                                     "config.toml", "journal.jsonl", "metrics.json", "program.py"]
    assert git(run, "status", "--porcelain") == ""
    log_rows = json.loads(cli("log", name, "--runs-dir", tmp_path, "--json").out)
    assert [row["id"] for row in log_rows] == list(refs)

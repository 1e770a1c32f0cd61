"""`eplb-evolve run` and `eplb-evolve resume`, through the real command line.

The offline run here is the expensive part (the seed's evaluation on the quick suite alone takes
seconds), so one run serves many tests and `test_review_command.py` too: it is started as a real
subprocess, killed with SIGKILL after its first candidate, resumed in a second subprocess that
gets SIGINT (Ctrl-C), then resumed to the end in-process. Its tests check both the crash
safety and the shape of the finished run directory.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai_server import FakeOpenAIServer, ok
from paths import REPO

from evaluator.workloads.scenarios import suite
from harness.cli.main import main
from harness.proposers.moves import LIBRARY
from harness.proposers.mutate import format_response
from harness.proposers.prompts import build_cut_off_message
from harness.store import journal as journal_file
from harness.store.run_store import SECRET as WINDOW_SECRET

ROOT = REPO
_SCRIPT = Path(sys.executable).with_name("eplb-evolve")
EPLB = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "harness"]
MUTATE_NOTICE = "no model configured: using the offline 'mutate' proposer"
OFFLINE_ITERATIONS = 30  # never reached: the run is killed, then interrupted, then finished with fewer
SECRET = "sk-test-SECRET"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def cli(*args: str | Path) -> Result:
    """`eplb-evolve ARGS` in this process (no interpreter start-up), output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


def error_line(result: Result) -> str:
    """The single line a user mistake prints (exit 2, no traceback, nothing else on stderr)."""
    assert result.code == 2, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eplb-evolve: error: "), result.err
    return lines[0]


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True).stdout


def candidate_refs(run: Path) -> dict[int, str]:
    out = git(run, "for-each-ref", "--format=%(refname) %(objectname)", "refs/candidates")
    return {int(ref.rsplit("/", 1)[1]): sha for ref, sha in (line.split() for line in out.splitlines())}


def journal_lines(run: Path) -> list[dict]:
    """Every line of journal.jsonl, each of which must parse."""
    return [json.loads(line) for line in (run / "journal.jsonl").read_text(encoding="utf-8").splitlines()]


def outcome_lines(run: Path) -> list[dict]:
    """One line per attempt (the seed's first), in journal order: the call lines left out."""
    return [e for e in journal_lines(run) if not journal_file.is_call(e)]


def attempts_on_disk(run: Path) -> set[int]:
    journaled = {e["attempt"] for e in journal_lines(run)} if (run / "journal.jsonl").exists() else set()
    folders = {int(d.name) for d in (run / "artifacts").iterdir()} if (run / "artifacts").is_dir() else set()
    return journaled | folders


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise AssertionError(f"waiting for {what}: the process exited first ({proc.returncode}):\n"
                                 f"{log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    # A test session started as a background job inherits SIGINT *ignored*, and so would the child
    # (Python then installs no KeyboardInterrupt handler). Handling it here for the instant of the
    # spawn makes the child start with the default disposition, as from an interactive shell.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(log, "w") as handle:  # files, not pipes: nothing can block on a full pipe
            return subprocess.Popen([*EPLB, *args], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                    start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class OfflineRun:
    runs: Path
    name: str
    killed_log: str  # output of the `run` that got SIGKILL
    before_kill: dict[int, str]  # candidate id -> commit, as left by the killed process
    interrupted_code: int  # exit status of the resume that got SIGINT
    interrupted_log: str
    final: Result  # the last resume, to the end
    iterations: int  # the total the last resume was given

    @property
    def path(self) -> Path:
        return self.runs / self.name


_SHARED: dict[str, OfflineRun] = {}


def offline_run(tmp_path_factory: pytest.TempPathFactory) -> OfflineRun:
    """The shared offline run (made on first use; see the module docstring)."""
    if "run" not in _SHARED:
        _SHARED["run"] = _make_offline_run(tmp_path_factory.mktemp("offline"))
    return _SHARED["run"]


def _make_offline_run(runs: Path) -> OfflineRun:
    name, path = "offline", runs / "offline"
    killed_log, interrupted_log = runs / "run.log", runs / "resume.log"
    proc = spawn(["run", "--name", name, "--runs-dir", str(runs), "--iterations", str(OFFLINE_ITERATIONS),
                  "--suite", "quick", "--seed", "3", "--concurrency", "2", "--no-progress"], killed_log)
    wait_for("the first candidate", lambda: (path / ".git/refs/candidates/000001").exists(), proc, killed_log)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    before_kill = candidate_refs(path)
    frontier = max(attempts_on_disk(path))
    assert frontier < OFFLINE_ITERATIONS, "the run ended before it could be killed"

    proc = spawn(["resume", name, "--runs-dir", str(runs), "--no-progress"], interrupted_log)
    wait_for("an attempt after the crash", lambda: any(e["attempt"] > frontier for e in journal_lines(path)),
             proc, interrupted_log)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    interrupted_code = proc.wait(timeout=60)
    iterations = max(attempts_on_disk(path)) + 2  # resume goes on for two more attempts
    final = cli("resume", name, "--runs-dir", runs, "--iterations", iterations, "--no-progress")
    return OfflineRun(runs, name, killed_log.read_text(), before_kill, interrupted_code,
                      interrupted_log.read_text(), final, iterations)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> OfflineRun:
    return offline_run(tmp_path_factory)


# -- crash safety ---------------------------------------------------------------------------------

def test_kill_9_then_resume_loses_nothing_and_duplicates_nothing(offline):
    assert offline.final.code == 0, offline.final
    assert "stopped by iterations" in offline.final.out
    entries = outcome_lines(offline.path)  # every line parses
    attempts = [e["attempt"] for e in entries]
    assert sorted(attempts) == list(range(offline.iterations + 1))  # the seed's 0, then each attempt once
    # every model call has its line, made as it returned, and its attempt's line lists exactly those,
    # whether the attempt ended, was cut short by the kill or the Ctrl-C, or was rebuilt from its commit
    calls = journal_file.calls_by_attempt(journal_lines(offline.path))
    assert all(e.get("calls", e.get("finished_calls")) == calls.get(e["attempt"], []) for e in entries if e["attempt"])
    refs = candidate_refs(offline.path)
    assert list(refs) == list(range(len(refs))) and len(refs) >= 2
    for cid, sha in offline.before_kill.items():  # what was committed before the kill is still there
        assert refs[cid] == sha
    journaled = [e["candidate_id"] for e in entries if e.get("candidate_id") is not None]
    assert sorted(journaled) == list(refs)  # one line per candidate, none twice
    assert {e["commit"] for e in entries if e.get("candidate_id") is not None} == set(refs.values())
    log = json.loads(cli("log", offline.name, "--runs-dir", offline.runs, "--json").out)
    assert [row["id"] for row in log] == list(refs)
    assert len({row["attempt"] for row in log}) == len(log)
    hashes = [json.loads(git(offline.path, "show", f"{sha}:metrics.json"))["code_hash"] for sha in refs.values()]
    assert len(set(hashes)) == len(hashes)  # nothing evaluated twice across the crash


def test_ctrl_c_stops_cleanly_with_a_summary_and_resume_goes_on(offline):
    assert offline.interrupted_code == 130, offline.interrupted_log
    assert "stopped by interrupted (Ctrl-C)" in offline.interrupted_log
    assert "best: candidate" in offline.interrupted_log and "Traceback" not in offline.interrupted_log
    assert "2 attempts this session" in offline.final.out  # the last resume went on to the end


def test_the_offline_default_is_announced_once(offline):
    assert offline.killed_log.count(MUTATE_NOTICE) == 1
    assert MUTATE_NOTICE not in offline.final.err  # resume reuses the saved settings silently


# -- the run directory ------------------------------------------------------------------------------

def test_the_run_is_a_git_repository_with_a_commit_per_candidate(offline):
    run = offline.path
    refs = candidate_refs(run)
    assert git(run, "rev-list", "--max-parents=0", "--all").split() == [refs[0]]  # the seed is the only root
    reachable = set(git(run, "log", "--all", "--format=%H").split())
    assert set(refs.values()) <= reachable
    metas = {cid: json.loads(git(run, "show", f"{sha}:metrics.json")) for cid, sha in refs.items()}
    valid = {cid for cid, meta in metas.items() if meta["status"] == "valid"}
    for cid, sha in refs.items():
        meta = metas[cid]
        assert meta["id"] == cid
        parents = git(run, "rev-list", "--parents", "-n", "1", sha).split()[1:]
        assert parents == [refs[p] for p in meta["parent_ids"]]
        assert set(meta["parent_ids"]) <= valid  # nothing is bred from a failed candidate
        message = git(run, "log", "-1", "--format=%B", sha)
        assert message.startswith(f"{meta['name']}\n\n{meta['description'].strip()}\n\n")
        trailers = dict(line.split(": ", 1) for line in message.strip().split("\n\n")[-1].splitlines())
        assert trailers["Candidate-Id"] == str(cid) and trailers["Status"] == meta["status"]
        assert trailers["Model"] == ("mutate" if cid else "none") and trailers["Tokens"] == "0+0"
        assert "Cost" in trailers
        if meta["status"] == "valid":
            score = meta["evaluation"]["combined_score"]
            assert float(trailers["Combined-Score"]) == pytest.approx(score, abs=1e-4)


def test_best_tag_island_branches_and_ignored_run_files(offline):
    run = offline.path
    refs = candidate_refs(run)
    log = json.loads(cli("log", offline.name, "--runs-dir", offline.runs, "--json").out)
    best = max((row for row in log if row["status"] == "valid"), key=lambda r: (r["combined_score"], -r["id"]))
    assert git(run, "rev-parse", "best^{commit}").strip() == refs[best["id"]]
    assert (run / "program.py").read_text() == git(run, "show", f"{refs[best['id']]}:program.py")
    branches = git(run, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
    assert sorted(branches) == [f"island-{i}" for i in range(4)]  # every island, even one still at the seed
    for name in ("config.toml", "journal.jsonl", "artifacts"):
        assert (run / name).exists()
        assert git(run, "check-ignore", name).strip() == name
    assert git(run, "status", "--porcelain") == ""


def _digests(run: Path, commit: str) -> dict[str, str]:
    evaluation = json.loads(git(run, "show", f"{commit}:metrics.json"))["evaluation"]
    return {s["name"]: s["windows_digest"] for s in evaluation["scenarios"]}


def test_the_run_scores_on_its_own_secret_windows_and_resume_keeps_them(offline):
    secret = offline.path / ".git" / WINDOW_SECRET
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text().strip().isdigit()
    assert not git(offline.path, "log", "--all", "--format=", "--name-only").count(WINDOW_SECRET)  # never committed
    refs = candidate_refs(offline.path)
    seed = _digests(offline.path, refs[0])
    published = {s.name: s.windows_digest(False) for s in suite("quick")}
    assert seed.keys() == published.keys() and all(seed[n] != published[n] for n in seed)
    # Every candidate, before the kill -9 and after both resumes, was scored on the run's windows.
    valid = [c for c in refs if json.loads(git(offline.path, "show", f"{refs[c]}:metrics.json"))["evaluation"]["valid"]]
    assert len(valid) > 1 and all(_digests(offline.path, refs[c]) == seed for c in valid)


# -- LLM runs through the command line --------------------------------------------------------------

MOVES = {move.name: move for move in LIBRARY}


def answer(name: str) -> str:
    move = MOVES[name]
    return "My idea.\n\n" + format_response(move.name, move.description, move.edits)


MISS = format_response("miscopied", "A SEARCH that is not there.", (
    ("    gpu, rank = balanced_packing(replica_load, num_gpus // nodes)\n", "    pass\n"),))
BROKEN = format_response("broken", "Raises on every call.", ((
    "    weight = weight.detach().float().cpu()\n",
    "    weight = weight.detach().float().cpu()\n    raise RuntimeError(\"deliberately broken\")\n"),))
LLM_CONFIG = """\
[proposer]
kind = "llm"
models = [{ name = "test-model" }]
prices = { "test-model" = { prompt_per_mtok = 2.0, completion_per_mtok = 10.0 } }
"""
LLM_SCRIPT = [  # one model conversation per attempt, in order (concurrency 1)
    [ok(answer("vectorised_packing"), usage=(1000, 200))],                      # 1: valid
    [ok(MISS, usage=(1000, 100)), ok(answer("snake_placement"), usage=(1200, 150))],  # 2: fixed, valid
    [ok("No idea, sorry.", finish_reason="length"), ok("Still nothing.", finish_reason="length")],  # 3: cut off
    # 4: cut off after </DIFF> (never applied, though it parses), then complete: the program is invalid
    [ok(BROKEN, finish_reason="length"), ok(BROKEN)],
    [ok(answer("global_policy"))],                                               # 5: valid
]


@dataclass(frozen=True)
class LLMRuns:
    runs: Path
    server: FakeOpenAIServer
    recorded: Result
    replayed: Result


@pytest.fixture(scope="module")
def llm_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMRuns]:
    """An LLM run against the test server with the key in the environment, and its replay."""
    runs = tmp_path_factory.mktemp("llm")
    config = runs / "llm.toml"
    config.write_text(LLM_CONFIG)
    # One worker: the script is consumed in attempt order, and a replay reproduces the commit order
    # only when each evaluation is recorded before the next attempt is planned.
    common = ["--runs-dir", runs, "--config", config, "--suite", "quick", "--iterations", len(LLM_SCRIPT),
              "--seed", "5", "--islands", "1", "--fix-attempts", "1", "--workers", "1"]
    with FakeOpenAIServer() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", SECRET)
        server.push(*[b for conversation in LLM_SCRIPT for b in conversation])
        recorded = cli("run", "--name", "llm", "--api-base", server.url, "--model", "test-model", *common,
                       "--no-progress")
        env.delenv("OPENAI_API_KEY")  # the replay needs no key
        replayed = cli("run", "--name", "replayed", "--proposer", "replay", "--replay-from", "llm", *common)
        yield LLMRuns(runs, server, recorded, replayed)


def test_an_llm_run_commits_candidates_with_tokens_and_cost(llm_runs):
    assert llm_runs.recorded.code == 0, llm_runs.recorded
    entries = outcome_lines(llm_runs.runs / "llm")[1:]
    assert [e["status"] for e in entries] == ["valid", "valid", "parse_failed", "invalid", "valid"]
    first, fixed = entries[0], entries[1]
    assert (first["prompt_tokens"], first["completion_tokens"]) == (1000, 200)
    assert first["cost"] == pytest.approx((1000 * 2 + 200 * 10) / 1e6)
    assert (fixed["prompt_tokens"], fixed["completion_tokens"], len(fixed["calls"])) == (2200, 250, 2)
    message = git(llm_runs.runs / "llm", "log", "-1", "--format=%B", fixed["commit"])
    assert message.startswith("snake_placement\n\n") and "Tokens: 2200+250" in message
    assert "Model: test-model" in message and f"Cost: {(2200 * 2 + 250 * 10) / 1e6:.6f}" in message
    broken = entries[3]  # a failed program is a commit too, and never a parent
    assert "Status: invalid" in git(llm_runs.runs / "llm", "log", "-1", "--format=%B", broken["commit"])
    assert broken["candidate_id"] not in entries[4]["parent_ids"]
    chat = llm_runs.server.chat_requests
    assert chat[2].body["messages"][:-2] == chat[1].body["messages"]  # the miss went back in the same
    assert chat[2].body["messages"][-2] == {"role": "assistant", "content": MISS}  # conversation, with
    assert "block 1 failed" in chat[2].body["messages"][-1]["content"]  # the error
    assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in chat)
    assert [r.path for r in llm_runs.server.requests].count("/v1/models") == 1  # one probe per run
    tokens = sum(e["prompt_tokens"] for e in entries), sum(e["completion_tokens"] for e in entries)
    assert f"model use: {tokens[0]} prompt + {tokens[1]} completion tokens" in llm_runs.recorded.out


def test_cut_off_answers_are_journaled_told_so_and_the_summary_advises_more_output_tokens(llm_runs):
    calls = [e for e in journal_lines(llm_runs.runs / "llm") if journal_file.is_call(e)]
    assert [c["finish_reason"] for c in calls] == ["stop", "stop", "stop", "length", "length", "length", "stop",
                                                   "stop"]
    assert llm_runs.server.chat_requests[4].body["messages"][-1] == build_cut_off_message(8192)
    for result in (llm_runs.recorded, llm_runs.replayed):  # a replay serves the recorded finish reasons
        (advice,) = [line for line in result.out.splitlines() if line.startswith("advice: ")]
        assert "3 of 8 model calls this session stopped at the output limit" in advice
        assert "max_output_tokens = 8192" in advice and "config.toml" in advice


def test_without_a_terminal_progress_is_plain_lines(llm_runs):
    assert "attempt" not in llm_runs.recorded.err  # --no-progress
    lines = [line for line in llm_runs.replayed.err.splitlines() if line.startswith("attempt ")]
    assert lines and lines[0].startswith("attempt 1/5: ")  # the first attempt is always shown
    assert all(re.fullmatch(r"attempt [1-5]/5: \d evaluated, \d valid, best 0\.\d{4}, \d+(\.\dk)? tokens, "
                            r"\$\d+\.\d\d", line) for line in lines), lines
    assert "\r" not in llm_runs.replayed.err  # no bar redrawn in a log file


def _files(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            yield path, data
            if path.parent.parent.name == "objects" and len(path.parent.name) == 2:
                yield path, zlib.decompress(data)  # a loose Git object is compressed: look inside too


def test_the_api_key_is_written_nowhere(llm_runs):
    checked = 0
    for path, data in _files(llm_runs.runs / "llm"):
        assert SECRET.encode() not in data, f"the API key leaked into {path}"
        checked += 1
    assert checked > 50  # journal, artifacts, config and every Git object were looked at
    assert "OPENAI_API_KEY" in (llm_runs.runs / "llm" / "config.toml").read_text()  # only its name


def test_a_replay_reproduces_the_same_candidates_in_the_same_order(llm_runs):
    assert llm_runs.replayed.code == 0, llm_runs.replayed
    # on the same windows: the recorded run's secret
    secrets = [(llm_runs.runs / run / ".git" / WINDOW_SECRET).read_text() for run in ("replayed", "llm")]
    assert secrets[0] == secrets[1]
    original = outcome_lines(llm_runs.runs / "llm")
    replayed = outcome_lines(llm_runs.runs / "replayed")

    def story(entries: list[dict], run: Path) -> list[tuple]:
        rows = []
        for e in sorted(entries, key=lambda e: e["attempt"]):
            code_hash = None
            if e.get("commit"):
                code_hash = json.loads(git(run, "show", f"{e['commit']}:metrics.json"))["code_hash"]
            rows.append((e["attempt"], e["status"], e.get("candidate_id"), tuple(e.get("parent_ids") or ()),
                         code_hash, e.get("prompt_tokens"), e.get("completion_tokens")))
        return rows

    assert story(replayed, llm_runs.runs / "replayed") == story(original, llm_runs.runs / "llm")
    assert len(llm_runs.server.chat_requests) == sum(len(c) for c in LLM_SCRIPT)  # the replay asked nobody
    prompts = [json.loads((llm_runs.runs / "replayed" / c["prompt"]).read_text())
               for e in replayed for c in e.get("calls", [])]
    assert prompts == [r.body["messages"] for r in llm_runs.server.chat_requests]


def test_an_unreachable_endpoint_is_one_line_before_any_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    result = cli("run", "--name", "x", "--runs-dir", tmp_path, "--api-base", "http://127.0.0.1:9/v1",
                 "--model", "test-model", "--suite", "quick")
    line = error_line(result)
    assert "cannot reach the model endpoint http://127.0.0.1:9/v1" in line and "--api-base" in line
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_a_missing_api_key_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as server:
        result = cli("run", "--name", "x", "--runs-dir", tmp_path, "--api-base", server.url, "--model", "test-model")
        assert server.requests == []
    assert "OPENAI_API_KEY" in error_line(result) and list(tmp_path.iterdir()) == []


# -- user mistakes ------------------------------------------------------------------------------------

def test_a_bad_config_key_is_one_line_with_a_suggestion(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[run]\niteratons = 3\n")
    line = error_line(cli("run", "--config", config, "--runs-dir", tmp_path / "runs"))
    assert "unknown key 'iteratons'" in line and "did you mean 'iterations'" in line


def test_a_bad_model_weight_is_one_line(tmp_path):
    line = error_line(cli("run", "--model", "x:abc", "--runs-dir", tmp_path))
    assert "--model x:abc" in line and "must be a number" in line


@pytest.mark.parametrize("verb", [["resume"], ["log"], ["show"], ["best"]])
def test_an_unknown_run_is_one_line(tmp_path, verb):
    extra = ["1"] if verb == ["show"] else []
    line = error_line(cli(*verb, "no-such-run", *extra, "--runs-dir", tmp_path))
    assert "unknown run 'no-such-run'" in line


def test_an_existing_run_name_is_one_line_and_the_run_is_untouched(offline):
    before = (offline.path / "journal.jsonl").read_bytes()
    line = error_line(cli("run", "--name", offline.name, "--runs-dir", offline.runs, "--suite", "quick"))
    assert "exists" in line and "resume" in line
    assert (offline.path / "journal.jsonl").read_bytes() == before


def test_an_unknown_candidate_is_one_line(offline):
    line = error_line(cli("show", offline.name, "999", "--runs-dir", offline.runs))
    assert "no candidate 999" in line

"""The run directory: a browsable Git population, a journal, artifacts, and surviving kill -9."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest
from candidate_factory import candidate
from paths import REPO, TESTS

from evaluator.errors import UserError
from harness.store import journal as journal_file
from harness.store.journal import Spend
from harness.store.run_store import RunStore, resolve_run
from harness.store.status import Status

ROOT = REPO


def git_out(run: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=run, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run with a seed, two children of it, a crossover and an invalid child."""
    path = tmp_path / "runs" / "demo"
    with RunStore.create(path, "[run]\nseed = 1\n", candidate(0)) as store:
        a = store.commit(candidate(1, (0,), score=0.6, island=0))
        b = store.commit(candidate(2, (0,), score=0.7, island=1))
        store.commit(candidate(3, (1, 2), score=0.8, island=0))
        store.commit(candidate(4, (2,), valid=False, island=1),
                     {"calls": [{"prompt_hash": "abc", "response": "artifacts/000004/response.txt"}]})
        store.set_best(store.load_candidates()[3])
        store.set_island_head(0, a)
        store.set_island_head(1, b)
    return path


def test_every_candidate_is_a_commit_whose_parents_are_its_parent_candidates(run: Path) -> None:
    repo = git.Repo(run)
    commits = {int(r.path.rsplit("/", 1)[1]): r.commit
               for r in repo.references if r.path.startswith("refs/candidates/")}
    assert sorted(commits) == [0, 1, 2, 3, 4]
    assert commits[0].parents == ()
    assert [p.hexsha for p in commits[3].parents] == [commits[1].hexsha, commits[2].hexsha]
    assert commits[4].parents == (commits[2],)
    assert commits[1].author.name == "eplb-evolve"
    tree = commits[3].tree
    assert tree["program.py"].data_stream.read().decode() == candidate(3).code
    assert json.loads(tree["metrics.json"].data_stream.read())["evaluation"]["combined_score"] == 0.8


def test_commit_message_is_name_description_then_trailers(run: Path) -> None:
    message = git_out(run, "log", "-1", "--format=%B", "refs/candidates/000003")
    name, description, trailers = message.strip().split("\n\n")
    assert (name, description) == ("variant_3", "Variant 3.")
    assert trailers.startswith("Candidate-Id: 3\nParent: 1\nParent: 2\nIsland: 0\nIteration: 3\n"
                               "Status: valid\nCombined-Score: 0.8000\n")
    assert "Tokens: 103+50" in trailers
    parsed = git_out(run, "log", "-1", "--format=%(trailers:key=Status,valueonly)", "refs/candidates/000004")
    assert parsed.strip() == "invalid"
    assert "Error: window 3" in git_out(run, "log", "-1", "--format=%B", "refs/candidates/000004")


def test_the_work_tree_shows_the_best_program_and_is_clean(run: Path) -> None:
    assert (run / "program.py").read_text() == candidate(3).code
    assert git_out(run, "status", "--porcelain") == ""
    assert git_out(run, "rev-parse", "HEAD") == git_out(run, "rev-parse", "best^{commit}")
    assert git_out(run, "rev-parse", "island-1") == git_out(run, "rev-parse", "refs/candidates/000002")
    graph = git_out(run, "log", "--all", "--oneline")
    assert all(f"variant_{i}" in graph for i in range(5))


def test_git_works_without_a_user_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    with RunStore.create(tmp_path / "r", "", candidate(0)) as store:
        store.set_best(store.commit(candidate(1, (0,), score=0.9)))
    author = git_out(tmp_path / "r", "log", "-1", "--format=%an <%ae>")
    assert author == "eplb-evolve <eplb-evolve@localhost>\n"


def test_diff_is_against_the_first_parent(run: Path) -> None:
    with RunStore.open(run, readonly=True) as store:
        diff = store.diff(3)
        seed_diff = store.diff(0)
        with pytest.raises(UserError, match="no candidate 9"):
            store.diff(9)
    assert "a/program.py (candidate 1)" in diff and "-    return 1\n+    return 3\n" in diff
    assert seed_diff.startswith("--- /dev/null") and "+    return 0" in seed_diff


def test_reopening_loads_every_candidate_and_continues_the_numbering(run: Path) -> None:
    with RunStore.open(run) as store:
        loaded = store.load_candidates()
        assert [c.id for c in loaded] == [0, 1, 2, 3, 4]
        assert loaded[3].code == candidate(3).code and loaded[3].parent_ids == (1, 2) and loaded[3].commit
        assert loaded[4].status is Status.INVALID and not loaded[4].valid
        assert (store.next_candidate_id, store.next_attempt) == (5, 5) and store.repairs == []
        journal = store.load_journal()
        assert [e["candidate_id"] for e in journal] == [0, 1, 2, 3, 4]
        assert journal[4]["calls"][0]["prompt_hash"] == "abc"
        assert journal[3]["commit"] == loaded[3].commit


def test_artifacts_and_candidate_less_attempts_are_journaled(run: Path) -> None:
    with RunStore.open(run) as store:
        attempt = store.begin_attempt()
        first = store.save_artifact(attempt, "response", "text one")
        second = store.save_artifact(attempt, "response", "text two")
        store.append_journal({"attempt": attempt, "status": "patch_failed",
                              "calls": [{"prompt_hash": "h", "response": first}]})
        with pytest.raises(ValueError):
            store.save_artifact(attempt, "../escape", "x")
    assert (first, second) == ("artifacts/000005/response.txt", "artifacts/000005/response-2.txt")
    assert (run / second).read_text() == "text two"
    last = RunStore.open(run, readonly=True).load_journal()[-1]
    assert last["status"] == "patch_failed" and last["candidate_id"] is None and "timestamp" in last
    assert git_out(run, "status", "--porcelain") == ""  # run files are ignored by Git


def call_record(number: int, prompt_tokens: int, cost: float) -> dict:
    return {"call": number, "prompt_hash": f"h{number}", "prompt": f"artifacts/000005/prompt-{number}.txt",
            "response": f"artifacts/000005/response-{number}.txt", "model": "m", "prompt_tokens": prompt_tokens,
            "completion_tokens": 100, "cost": cost, "latency_s": 1.0, "finish_reason": "length",
            "tokens_estimated": False}


def test_an_attempt_cut_short_keeps_the_calls_it_journaled_and_counts_them_once(run: Path) -> None:
    with RunStore.open(run) as store:
        attempt = store.begin_attempt()
        store.save_artifact(attempt, "plan", "{}")
        store.journal_call(attempt, call_record(1, 1000, 0.01))
        store.journal_call(attempt, call_record(2, 1200, 0.02))
    # Ctrl-C (or a crash) before the attempt's outcome line; a resume journals it, calls and all
    with RunStore.open(run) as store:
        entries = store.load_journal()
        assert store.repairs == ["journaled attempt 5 as interrupted, keeping its 2 finished model call(s)"]
        assert store.next_attempt == 6
    calls, outcome = [e for e in entries if journal_file.is_call(e)], entries[-1]
    assert [(c["attempt"], c["call"], c["finish_reason"]) for c in calls] == [(5, 1, "length"), (5, 2, "length")]
    assert outcome["status"] == "interrupted" and "calls" not in outcome  # a replay serves no answer of it
    assert outcome["finished_calls"] == [call_record(1, 1000, 0.01), call_record(2, 1200, 0.02)]
    assert (outcome["prompt_tokens"], outcome["completion_tokens"]) == (2200, 200)
    spent = journal_file.spend(entries)
    assert spent[5].prompt_tokens == 2200 and spent[5].cost == pytest.approx(0.03)  # once, not twice
    assert spent[4] == Spend(104, 50, pytest.approx(0.004))  # no call lines (an older run): its own line
    with RunStore.open(run) as store:
        assert store.repairs == [] and store.load_journal() == entries  # nothing to mend twice


def test_commits_must_come_in_id_order_with_known_parents(run: Path) -> None:
    with RunStore.open(run) as store:
        with pytest.raises(ValueError, match="next id is 5"):
            store.commit(candidate(6, (0,)))
        with pytest.raises(ValueError, match="unknown parent"):
            store.commit(candidate(5, (42,)))


def test_create_refuses_a_non_empty_directory(run: Path) -> None:
    with pytest.raises(UserError, match="already exists and is not empty"):
        RunStore.create(run, "", candidate(0))


def test_open_explains_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such run directory"):
        RunStore.open(tmp_path / "missing")
    with pytest.raises(UserError, match="no Git repository"):
        RunStore.open(tmp_path)
    git.Repo.init(tmp_path / "plain")
    with pytest.raises(UserError, match="not an eplb-evolve run"):
        RunStore.open(tmp_path / "plain")


def test_a_second_writer_is_refused_but_readers_are_welcome(run: Path) -> None:
    with RunStore.open(run):
        with pytest.raises(UserError, match=f"in use by another process \\(pid {os.getpid()}\\)"):
            RunStore.open(run)
        with RunStore.open(run, readonly=True) as reader:
            assert len(reader.load_candidates()) == 5
            with pytest.raises(ValueError, match="read-only"):
                reader.append_journal({"attempt": 9, "status": "duplicate"})


def test_resolve_run_accepts_a_name_or_a_path_and_lists_runs_when_unknown(run: Path) -> None:
    runs = run.parent
    assert resolve_run("demo", runs) == runs / "demo"
    assert resolve_run(str(run), "elsewhere") == run
    with pytest.raises(UserError, match="unknown run 'dmeo'.*runs in .*: demo"):
        resolve_run("dmeo", runs)


def test_open_repairs_what_a_crash_can_leave_behind(run: Path) -> None:
    journal = run / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    # Crash after candidate 4's ref but before its journal line; then a torn line; an attempt
    # that saved a prompt and died; Git lock files of interrupted ref and checkout writes.
    journal.write_text("".join(lines[:-1]) + '{"attempt": 7, "stat')
    (run / "artifacts" / "000006").mkdir(parents=True)
    (run / "artifacts" / "000006" / "prompt.txt").write_text("p")
    (run / ".git" / "refs" / "candidates" / "000005.lock").write_text("")
    (run / ".git" / "index.lock").write_text("")
    (run / "program.py").write_text("half-written")
    with RunStore.open(run) as store:
        entries = store.load_journal()
        assert [e.get("candidate_id") for e in entries] == [0, 1, 2, 3, 4, None]
        assert entries[4]["reconstructed"] and entries[4]["calls"][0]["prompt_hash"] == "abc"
        assert entries[5] == {**entries[5], "attempt": 6, "status": "interrupted",
                              "artifacts": ["artifacts/000006/prompt.txt"]}
        assert (store.next_candidate_id, store.next_attempt) == (5, 7)
        assert store.repairs == [
            "removed the stale Git lock .git/index.lock",
            "removed the stale Git lock .git/refs/candidates/000005.lock",
            "cut a torn last line (20 bytes) off journal.jsonl",
            "rebuilt the journal line of candidate 4 from its commit",
            "journaled attempt 6 as interrupted"]
        store.commit(candidate(5, (3,), iteration=7))
    assert (run / "program.py").read_text() == candidate(3).code
    assert git_out(run, "status", "--porcelain") == ""


def test_damage_before_the_journal_end_is_reported_not_cut(run: Path) -> None:
    journal = run / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:2]) + "{oops\n" + "".join(lines[2:]))
    with pytest.raises(UserError, match="journal.jsonl:3: damaged journal line before the end"):
        RunStore.open(run)
    assert journal.read_text().count("\n") == len(lines) + 1
    journal.write_text("".join(lines))
    RunStore.open(run).close()  # the failed open let go of the run lock


WRITER = """
import random, sys, time
from candidate_factory import candidate
from harness.store.run_store import RunStore

run, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
with RunStore.open(run) as store:
    print("ready", flush=True)
    while True:
        attempt = store.begin_attempt()
        prompt = store.save_artifact(attempt, "prompt", f"prompt {attempt}")
        response = store.save_artifact(attempt, "response", f"response {attempt}")
        calls = [{"prompt_hash": f"h{attempt}", "prompt": prompt, "response": response, "prompt_tokens": 10}]
        store.journal_call(attempt, calls[0])
        if rng.random() < 0.3:
            store.append_journal({"attempt": attempt, "status": "parse_failed", "calls": calls})
            continue
        cid = store.next_candidate_id
        child = candidate(cid, (rng.randrange(cid),), score=rng.random(), iteration=attempt,
                          valid=rng.random() < 0.8)
        committed = store.commit(child, {"calls": calls})
        print("committed", flush=True)
        if rng.random() < 0.2:
            store.set_best(committed)
"""


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crashy"
    RunStore.create(path, "", candidate(0)).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(7)
    repairs: list[str] = []
    for round_ in range(12):  # at least 4 rounds, and on until a kill has landed inside an attempt
        if round_ >= 4 and repairs:
            break
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(round_)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        for _ in range(3):  # a few commits first, however slow a loaded machine makes the writer
            assert proc.stdout.readline() == "committed\n", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.1))  # then a kill at a random moment
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with RunStore.open(path) as store:  # reconciles, as a resume would
            candidates = store.load_candidates()
            journal = store.load_journal()
            next_id, next_attempt = store.next_candidate_id, store.next_attempt
            repairs += store.repairs
        ids = [c.id for c in candidates]
        assert ids == list(range(len(ids))) and next_id == len(ids)
        outcomes = [e for e in journal if not journal_file.is_call(e)]
        journaled = [e["candidate_id"] for e in outcomes if e["candidate_id"] is not None]
        assert sorted(journaled) == ids  # every candidate journaled exactly once
        attempts = [e["attempt"] for e in outcomes]
        assert len(attempts) == len(set(attempts)) and next_attempt == max(attempts) + 1
        by_id = {e["candidate_id"]: e for e in outcomes}
        for c in candidates[1:]:
            entry = by_id[c.id]
            assert entry["attempt"] == c.iteration and entry["calls"][0]["prompt_hash"] == f"h{c.iteration}"
        called = journal_file.calls_by_attempt(journal)  # each journaled call counted once, cut short or not
        assert {a: s.prompt_tokens for a, s in journal_file.spend(journal).items() if a in called} == \
            {a: 10 for a in called}
        assert all(e["finished_calls"] == called.get(e["attempt"], [])
                   for e in outcomes if e["status"] == "interrupted")
    assert len(ids) > 8, "the writer was killed before it got going"
    assert repairs, "no kill landed inside an attempt: the recovery went untested"

"""The run directory: a Git population, an attempt journal and raw artifacts, safe to kill at any time.

Layout of `runs/<name>/` (stable: the replay proposer and people read it):

    .git/                     the population (see `harness.store.gitpop`): a commit per candidate,
                              refs/candidates/000012, branches island-N, tag best
    program.py, metrics.json, attempt.json, .gitignore
                              the work tree: the best candidate, checked out (detached HEAD), so
                              `cat runs/<name>/program.py` is the best program so far; it is
                              overwritten whenever the best changes
    config.toml               the resolved config (ignored by Git; never holds an API key, only
                              the name of the variable that does)
    journal.jsonl             one JSON line per model call and per attempt (ignored by Git)
    artifacts/000012/         raw texts of attempt 12: prompt.txt, response.txt, prompt-2.txt...

Journal lines (see `harness.store.journal`). A call line, written as each model call returns:
{"attempt", "kind": "call", "call" (1, 2... within the attempt), "prompt_hash", "prompt", "response"
(artifact paths relative to the run directory), "model", "prompt_tokens", "completion_tokens",
"cost", "latency_s", "finish_reason" ("stop", "length"...; null when the proposer has none),
"tokens_estimated" (the endpoint sent no usage), "timestamp"}. An outcome line, one per attempt:
{"attempt", "candidate_id" (null when nothing was evaluated), "commit", "parent_ids", "island",
"model", "prompt_tokens", "completion_tokens", "cost" (the attempt's totals), "calls": [the
attempt's call records, as on its call lines], "blocks" (parse/apply outcome per edit block),
"evaluation" (valid, error and the headline metrics, `candidate.HEADLINE`), "status" (a
`Status` value: "valid", "invalid", "patch_failed", "parse_failed", "duplicate",
"endpoint_error", "interrupted", ...), "error", "answer_status" and "answer_error" (when a call
failed after an answer that did not apply: what was wrong with that answer), "timestamp"}, plus
"reconstructed": true on lines rebuilt at resume, and on an "interrupted" line, "artifacts" and
"finished_calls" (the calls it had made, which no candidate used) in place of "calls".

Crash safety (kill -9 at any instant). `commit` writes, in order: the objects, the candidate
ref (atomic rename: the candidate now exists), then the outcome line (synced to disk). The commit
tree carries the journal entry too (`attempt.json`), so a writable `open` can always reconcile:
it cuts a torn journal tail, writes the line of any committed candidate that has none, marks
attempts that left artifacts or call lines but no outcome line as "interrupted" (with the calls they
finished and what those cost), clears stale Git lock files, restores
the `best` checkout, and derives the next candidate id and attempt number from what is on
disk. A run is written by one process at a time (an flock on .git/eplb-evolve.lock); readers
open it with `readonly=True` and take no lock.
"""
from __future__ import annotations

import difflib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import git

from evaluator.errors import UserError
from harness.store import gitpop, journal
from harness.store.candidate import Candidate, metrics
from harness.store.files import atomic_write
from harness.store.status import Status

CONFIG, JOURNAL, ARTIFACTS, LOCK = "config.toml", "journal.jsonl", "artifacts", "eplb-evolve.lock"
# The run's window secret (evaluator.workloads.scenarios.suite(name, secret)): inside .git/, so no
# commit, clone or push carries it, readable by the owner only (candidates run under other uids).
SECRET = "eplb-windows.secret"
_KIND_RE = re.compile(r"^[a-z0-9_]+$")
LOCK_WAIT_S = 0.5


def _summary(candidate: Candidate) -> dict[str, Any] | None:
    ev = candidate.evaluation
    return None if ev is None else {"valid": ev.valid, "error": ev.error, **metrics(ev)}


def attempt_entry(candidate: Candidate, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The journal entry of a committed candidate: the candidate's own fields win over `extra`."""
    entry: dict[str, Any] = {
        "attempt": candidate.iteration, "candidate_id": candidate.id,
        "parent_ids": list(candidate.parent_ids), "island": candidate.island, "model": candidate.model,
        "prompt_tokens": candidate.prompt_tokens, "completion_tokens": candidate.completion_tokens,
        "cost": candidate.cost,
    }
    entry.update((k, v) for k, v in extra.items() if k not in entry and k not in ("status", "evaluation"))
    entry.update(evaluation=_summary(candidate), status=candidate.status)
    entry.setdefault("timestamp", candidate.created_at)
    return entry


def _interrupted(attempt: int, calls: list[dict[str, Any]], artifacts: list[str]) -> dict[str, Any]:
    """The outcome line of an attempt cut short (by Ctrl-C or a crash): the calls it finished, and
    what they cost. They are `finished_calls`, not `calls`: a replay serves the answers listed in
    `calls`, and these answers were never used."""
    spent = journal.total(calls)
    return {"attempt": attempt, "candidate_id": None, "status": Status.INTERRUPTED, "artifacts": artifacts,
            "finished_calls": calls, "prompt_tokens": spent.prompt_tokens,
            "completion_tokens": spent.completion_tokens, "cost": spent.cost, "timestamp": time.time()}


def _lock(git_dir: Path) -> int:
    """Take the run's writer lock. A writer killed while forking a `git` child leaves that child
    holding the lock for the instant before it execs, hence the short wait before refusing."""
    fd = os.open(git_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{git_dir.parent}: the run is in use by another process (pid {holder}); "
                            f"wait for it to finish or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class RunStore:
    """One run directory. Writers hold its lock until `close()`; use it as a context manager.
    Not thread-safe: a writer that calls it from several threads (the controller journals model
    calls from its proposal threads) serialises those calls itself."""

    def __init__(self, path: Path, repo: git.Repo, lock_fd: int | None) -> None:
        self.path = path
        self._repo = repo
        self._lock_fd = lock_fd
        self._shas = gitpop.candidate_shas(repo)
        self._heads: dict[str, str] = {}
        # Writers only (set by create/reconcile): what the next candidate and attempt are numbered,
        # and what opening had to mend after a crash.
        self.next_candidate_id = max(self._shas, default=-1) + 1
        self.next_attempt = 0
        self.repairs: list[str] = []

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path | str, config_toml_text: str, seed: Candidate, secret: int | None = None) -> RunStore:
        """A new run whose root commit is `seed`, scored on windows drawn from `secret` (None: the
        published windows). Built in a temporary sibling directory and renamed into place, so a
        crash mid-creation leaves no half-made run behind."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"{path}: already exists and is not empty; resume that run, pick another "
                            f"run name, or remove the directory")
        if seed.id != 0 or seed.parent_ids or seed.iteration != 0:
            raise ValueError("the seed must have id 0, iteration 0 and no parents")
        path.parent.mkdir(parents=True, exist_ok=True)
        building = path.parent / f".{path.name}.creating-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        repo = gitpop.init_repo(building)
        lock_fd = _lock(Path(repo.git_dir))
        (building / CONFIG).write_text(config_toml_text, encoding="utf-8")
        if secret is not None:
            _write_secret(Path(repo.git_dir) / SECRET, secret)
        store = cls(building, repo, lock_fd)
        store.set_best(store.commit(seed, {"calls": []}))
        store.next_attempt = 1
        os.rename(building, path)
        repo.close()
        store.path = path
        store._repo = gitpop.open_repo(path)
        return store

    @property
    def secret(self) -> int | None:
        """The secret the run's windows are drawn from; None for a run scored on the published
        windows (every run made before runs had secrets)."""
        path = Path(self._repo.git_dir) / SECRET
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: cannot read the run's window secret ({error})") from None
        if not text.isdigit():
            raise UserError(f"{path}: the run's window secret is damaged (not a non-negative integer); its scores "
                            f"cannot be reproduced: start a new run")
        return int(text)

    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> RunStore:
        """An existing run. A writer takes the lock and reconciles after a crash; a reader does not."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: no such run directory")
        if not (path / ".git").is_dir() or not (path / ".git" / "refs").is_dir():
            raise UserError(f"{path}: not a run directory (no Git repository in it)")
        repo = gitpop.open_repo(path)
        lock_fd = None if readonly else _lock(Path(repo.git_dir))
        store = cls(path, repo, lock_fd)
        if 0 not in store._shas:
            store.close()
            raise UserError(f"{path}: a Git repository, but not an eplb-evolve run (no seed candidate "
                            f"ref {gitpop.candidate_ref(0)})")
        if not readonly:
            try:
                store._reconcile()
            except BaseException:
                store.close()
                raise
        return store

    def _reconcile(self) -> None:
        """Make journal, refs and work tree agree again after a crash (see the module docstring);
        what had to be mended is listed in `repairs`, for the resume message."""
        git_dir = Path(self._repo.git_dir)
        for lock in gitpop.clear_stale_locks(git_dir):
            self.repairs.append(f"removed the stale Git lock {lock.relative_to(self.path)}")
        cut = journal.repair(self.journal_path)
        if cut:
            self.repairs.append(f"cut a torn last line ({cut} bytes) off {JOURNAL}")
        entries = journal.read(self.journal_path)
        logged = {e.get("candidate_id") for e in entries}
        for candidate_id, sha in self._shas.items():
            if candidate_id not in logged:  # committed, then killed before its journal line
                _, entry = gitpop.read_candidate(self._repo, sha)
                entries.append({**entry, "commit": sha, "reconstructed": True})
                journal.append(self.journal_path, entries[-1])
                self.repairs.append(f"rebuilt the journal line of candidate {candidate_id} from its commit")
        attempts = set(journal.outcomes(entries))
        calls, artifacts = journal.calls_by_attempt(entries), self._artifacts_by_attempt()
        for attempt in sorted({*calls, *artifacts} - attempts):  # cut short between its plan and its end
            finished = calls.get(attempt, [])
            journal.append(self.journal_path, _interrupted(attempt, finished, artifacts.get(attempt, [])))
            attempts.add(attempt)
            kept = f", keeping its {len(finished)} finished model call(s)" if finished else ""
            self.repairs.append(f"journaled attempt {attempt} as interrupted{kept}")
        self.next_attempt = max(attempts, default=0) + 1
        best = gitpop.ref_sha(self._repo, gitpop.BEST_TAG)
        if best is not None:  # the checkout may have been cut short
            gitpop.checkout(self._repo, best)
            self._heads[gitpop.BEST_TAG] = best

    def _artifacts_by_attempt(self) -> dict[int, list[str]]:
        root = self.path / ARTIFACTS
        folders = sorted(d for d in root.iterdir() if d.name.isdigit()) if root.is_dir() else []
        return {int(d.name): sorted(f.relative_to(self.path).as_posix() for f in d.iterdir())
                for d in folders}

    def close(self) -> None:
        """Release the run lock (the process exiting does too, even on kill -9)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._repo.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL

    def _writable(self) -> None:
        if self._lock_fd is None:
            raise ValueError(f"{self.path}: opened read-only (or closed); open it with readonly=False")

    # -- writing ---------------------------------------------------------------------------
    def begin_attempt(self) -> int:
        """Hand out the next attempt number (artifacts and the journal line are filed under it)."""
        self._writable()
        self.next_attempt += 1
        return self.next_attempt - 1

    def save_config(self, text: str) -> None:
        """Replace config.toml atomically (e.g. a resume with new limits)."""
        self._writable()
        atomic_write(self.config_path, text)

    def save_artifact(self, attempt: int, kind: str, text: str) -> str:
        """Save a raw prompt/response as artifacts/<attempt>/<kind>.txt (-2, -3... when repeated);
        returns its path relative to the run directory, as the journal records it."""
        self._writable()
        if not _KIND_RE.match(kind):
            raise ValueError(f"artifact kind {kind!r}: use lowercase letters, digits and _")
        folder = self.path / ARTIFACTS / _attempt_dir(attempt)
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            name = f"{kind}.txt" if n == 1 else f"{kind}-{n}.txt"
            try:
                with open(folder / name, "x", encoding="utf-8") as handle:
                    handle.write(text)
            except FileExistsError:
                continue
            return f"{ARTIFACTS}/{_attempt_dir(attempt)}/{name}"
        raise ValueError(f"attempt {attempt}: too many {kind} artifacts")

    def commit(self, candidate: Candidate, attempt: Mapping[str, Any] | None = None) -> Candidate:
        """Record an evaluated candidate (valid or not): commit, ref, then journal line.

        `candidate.id` must be `next_candidate_id`; `attempt` holds what only the attempt knows
        (`calls`, `blocks`, ...). Returns the candidate with `commit` set.
        """
        self._writable()
        if candidate.id != self.next_candidate_id:
            raise ValueError(f"candidate id {candidate.id}: the next id is {self.next_candidate_id}")
        missing = [p for p in candidate.parent_ids if p not in self._shas]
        if missing:
            raise ValueError(f"candidate {candidate.id}: unknown parent(s) {missing}")
        entry = attempt_entry(candidate, attempt or {})
        sha = gitpop.write_candidate(self._repo, candidate, entry,
                                     [self._shas[p] for p in candidate.parent_ids])
        self._shas[candidate.id] = sha
        self.next_candidate_id += 1
        journal.append(self.journal_path, {**entry, "commit": sha})
        return replace(candidate, commit=sha)

    def journal_call(self, attempt: int, record: Mapping[str, Any]) -> None:
        """Journal one model call the moment it returns (see `harness.store.journal`)."""
        self._writable()
        journal.append(self.journal_path, {"attempt": attempt, "kind": journal.CALL, **record,
                                           "timestamp": time.time()})

    def append_journal(self, entry: Mapping[str, Any]) -> None:
        """Journal an attempt that produced no candidate (parse/patch failure, duplicate, ...)."""
        self._writable()
        if not isinstance(entry.get("attempt"), int) or not isinstance(entry.get("status"), str):
            raise ValueError("a journal entry needs an integer 'attempt' and a string 'status'")
        journal.append(self.journal_path, {"attempt": entry["attempt"], "candidate_id": None, **entry,
                                           "timestamp": entry.get("timestamp", time.time())})

    def set_best(self, candidate: Candidate) -> None:
        """Move the `best` tag and check the best program out in the work tree (no-op if unchanged)."""
        moved_to = self._move(gitpop.BEST_TAG, candidate)
        if moved_to:
            gitpop.checkout(self._repo, moved_to)

    def set_island_head(self, island: int, candidate: Candidate) -> None:
        """Point branch `island-N` at the island's best program (no-op if unchanged)."""
        self._move(gitpop.island_ref(island), candidate)

    def _move(self, ref: str, candidate: Candidate) -> str | None:
        """Point `ref` at the candidate's commit; returns that sha, or None when already there."""
        self._writable()
        sha = self._shas.get(candidate.id)
        if sha is None or (candidate.commit and candidate.commit != sha):
            raise ValueError(f"candidate {candidate.id} is not committed in this run")
        if self._heads.get(ref) == sha:
            return None
        gitpop.point(self._repo, ref, sha)
        self._heads[ref] = sha
        return sha

    # -- reading ---------------------------------------------------------------------------
    def load_candidates(self) -> list[Candidate]:
        """Every committed candidate, by id, read from the Git refs (the source of truth)."""
        shas = gitpop.candidate_shas(self._repo)
        return [gitpop.read_candidate(self._repo, sha)[0] for sha in shas.values()]

    def load_journal(self) -> list[dict[str, Any]]:
        return journal.read(self.journal_path)

    def diff(self, candidate_id: int) -> str:
        """Unified diff of a candidate's program.py against its first parent's (the seed's: against
        nothing), for `show`."""
        shas = gitpop.candidate_shas(self._repo)  # fresh: a reader may watch a run that grows
        if candidate_id not in shas:
            raise UserError(f"{self.path}: no candidate {candidate_id}; its ids go from 0 to {max(shas)}")
        candidate, _ = gitpop.read_candidate(self._repo, shas[candidate_id])
        parent = candidate.parent_ids[0] if candidate.parent_ids else None
        before = gitpop.read_program(self._repo, shas[parent]) if parent is not None else ""
        return "".join(difflib.unified_diff(
            before.splitlines(keepends=True), candidate.code.splitlines(keepends=True),
            f"a/program.py (candidate {parent})" if parent is not None else "/dev/null",
            f"b/program.py (candidate {candidate_id})"))


def _attempt_dir(attempt: int) -> str:
    """Folder name of an attempt's artifacts."""
    return f"{attempt:06d}"


def resolve_run(name_or_path: str | Path, runs_dir: Path | str) -> Path:
    """RUN on the command line: a name under runs_dir, or a path to a run directory."""
    runs_dir = Path(runs_dir)
    candidate = Path(name_or_path)
    if candidate.is_dir() and (candidate / ".git").is_dir():
        return candidate
    named = runs_dir / str(name_or_path)
    if named.is_dir():
        return named
    existing = sorted(p.name for p in runs_dir.iterdir()
                      if (p / ".git").is_dir() and not p.name.startswith(".")) if runs_dir.is_dir() else []
    known = f"runs in {runs_dir}: {', '.join(existing)}" if existing else f"there are no runs in {runs_dir}"
    raise UserError(f"unknown run '{name_or_path}': neither a run directory nor a name under "
                    f"{runs_dir}; {known}")


def _write_secret(path: Path, secret: int) -> None:
    """The secret, created owner-only (0600) and never through an existing file or link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(f"{secret}\n")

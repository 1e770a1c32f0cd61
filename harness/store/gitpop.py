"""The population as a Git history: one commit per candidate, written through gitpython's object DB.

Layout of a candidate commit: its tree holds `program.py` (the code), `metrics.json` (the
candidate record without its code: evaluation, lineage, model, tokens, cost), `attempt.json`
(the journal entry of the attempt that made it) and the run's `.gitignore`; its parents are its
parent candidates' commits (two for a crossover, none for the seed); its message is the
response's NAME, a blank line, its DESCRIPTION, a blank line and trailers (`Candidate-Id: 12`,
`Parent: 7`, `Island: 1`, `Status: valid`, then the headline metrics, `Combined-Score: 0.8123`,
`Runtime-Ms: 4.812`, ...), so `git log` reads
like the search's lab notebook.

Why plumbing instead of `git add` + `git commit`: a candidate's objects are written in this
process as loose objects by gitdb's `LooseObjectDB` (gitpython's own object library), about
0.2 ms each, where gitpython's default object DB spawns `git hash-object` per object (about 2 ms;
`Commit.create_from_tree` goes through it, so the commit object is serialised here). Refs,
reading (a persistent `git cat-file`) and checkout go through gitpython as usual.

Refs: `refs/candidates/000012` keeps every candidate reachable (invalid ones too), branches
`island-N` point at each island's best, the tag `best` at the run's best. A ref is written
after its commit's objects, by an atomic rename, so a ref never names a missing object.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import git
from git.objects.fun import tree_to_stream
from gitdb import IStream, LooseObjectDB

from harness.store.candidate import HEADLINE, Candidate, metrics

IDENTITY = git.Actor("eplb-evolve", "eplb-evolve@localhost")
# Git subprocesses (checkout) write reflogs; with no user identity configured they need one.
IDENTITY_ENV = {"GIT_AUTHOR_NAME": IDENTITY.name, "GIT_AUTHOR_EMAIL": IDENTITY.email,
                "GIT_COMMITTER_NAME": IDENTITY.name, "GIT_COMMITTER_EMAIL": IDENTITY.email}
PROGRAM, METRICS, ATTEMPT, GITIGNORE = "program.py", "metrics.json", "attempt.json", ".gitignore"
CANDIDATES = "refs/candidates"
BEST_TAG = "refs/tags/best"
LOCK_GRACE_S = 2.0  # how long a killed writer's orphaned `git` child may take to finish
GITIGNORE_TEXT = """\
# eplb-evolve run files: kept beside the programs, not versioned
/config.toml
/journal.jsonl
/artifacts/
"""
_FILE_MODE = 0o100644
_GITIGNORE_BYTES = GITIGNORE_TEXT.encode("utf-8")
# Its blob is the same in every commit: stored once by init_repo, then only referenced.
_GITIGNORE_SHA = hashlib.sha1(b"blob %d\0" % len(_GITIGNORE_BYTES) + _GITIGNORE_BYTES).digest()
_ID_RE = re.compile(r"^\d{6,}$")


def candidate_ref(candidate_id: int) -> str:
    return f"{CANDIDATES}/{candidate_id:06d}"


def island_ref(island: int) -> str:
    return f"refs/heads/island-{island}"


def _objects(repo: git.Repo) -> LooseObjectDB:
    return LooseObjectDB(os.path.join(repo.common_dir, "objects"))


def init_repo(path: Path) -> git.Repo:
    repo = git.Repo.init(path)
    repo.git.update_environment(**IDENTITY_ENV)
    _store(_objects(repo), b"blob", _GITIGNORE_BYTES)
    return repo


def open_repo(path: Path) -> git.Repo:
    repo = git.Repo(path)
    repo.git.update_environment(**IDENTITY_ENV)
    return repo


def _store(objects: LooseObjectDB, kind: bytes, data: bytes) -> bytes:
    """Write one loose object (atomically: temporary file, then rename); returns its binary sha."""
    return objects.store(IStream(kind, len(data), io.BytesIO(data))).binsha


def _commit_object(tree: bytes, parent_shas: list[str], message: str, timestamp: int) -> bytes:
    """A commit in Git's object format; the date is the candidate's, so the sha is reproducible."""
    who = f"{IDENTITY.name} <{IDENTITY.email}> {timestamp} +0000"
    header = [f"tree {tree.hex()}"] + [f"parent {sha}" for sha in parent_shas]
    return "\n".join(header + [f"author {who}", f"committer {who}", "", message]).encode("utf-8")


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def commit_message(candidate: Candidate) -> str:
    """NAME, DESCRIPTION, then trailers that `git log --format=%(trailers)` can query."""
    trailers = [("Candidate-Id", str(candidate.id))]
    trailers += [("Parent", str(p)) for p in candidate.parent_ids]
    trailers += [("Island", str(candidate.island)), ("Iteration", str(candidate.iteration)),
                 ("Status", str(candidate.status))]
    ev = candidate.evaluation
    if candidate.valid:  # combined_score -> Combined-Score: 0.8123, ...
        trailers += [(name.replace("_", "-").title(), f"{value:.{HEADLINE[name]}f}")
                     for name, value in metrics(ev).items()]
    elif ev is not None and ev.error:
        trailers.append(("Error", _one_line(ev.error)))
    trailers += [("Model", _one_line(candidate.model) or "none"),
                 ("Tokens", f"{candidate.prompt_tokens}+{candidate.completion_tokens}"),
                 ("Cost", f"{candidate.cost:.6f}")]
    title = _one_line(candidate.name, 100) or f"candidate-{candidate.id}"
    paragraphs = [title, candidate.description.strip(), "\n".join(f"{k}: {v}" for k, v in trailers)]
    return "\n\n".join(p for p in paragraphs if p) + "\n"


def write_candidate(repo: git.Repo, candidate: Candidate, attempt: dict[str, Any],
                    parent_shas: list[str]) -> str:
    """Write the candidate's objects, then its ref; returns the commit's hex sha."""
    record = candidate.to_dict()
    del record["code"], record["commit"]
    files = {
        PROGRAM: candidate.code.encode("utf-8"),
        METRICS: (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        ATTEMPT: (json.dumps(attempt, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    }
    objects = _objects(repo)
    entries = [(_store(objects, b"blob", data), _FILE_MODE, name) for name, data in files.items()]
    entries = sorted(entries + [(_GITIGNORE_SHA, _FILE_MODE, GITIGNORE)], key=lambda entry: entry[2])
    stream = io.BytesIO()
    tree_to_stream(entries, stream.write)
    tree = _store(objects, b"tree", stream.getvalue())
    commit = _store(objects, b"commit", _commit_object(tree, parent_shas, commit_message(candidate),
                                                       int(candidate.created_at))).hex()
    point(repo, candidate_ref(candidate.id), commit)
    return commit


def point(repo: git.Repo, ref: str, sha: str) -> None:
    """Write a ref (atomic rename of its file). Given a Commit object, gitpython writes it
    without looking the sha up through `git cat-file` first."""
    git.Reference(repo, ref).set_reference(git.Commit(repo, bytes.fromhex(sha)))


def checkout(repo: git.Repo, sha: str) -> None:
    """Show `sha` in the work tree, detached; ignored run files are left alone.

    Retried for up to LOCK_GRACE_S while another `git` holds the index (the orphaned child of a
    writer killed mid-checkout, see `clear_stale_locks`)."""
    deadline = time.monotonic() + LOCK_GRACE_S
    while True:
        try:
            repo.git.checkout("--detach", "--force", "--quiet", sha)
            return
        except git.GitCommandError as error:
            if "index" not in str(error.stderr) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def ref_sha(repo: git.Repo, ref: str) -> str | None:
    """The commit a ref names, or None when it does not exist."""
    try:
        return git.SymbolicReference.dereference_recursive(repo, ref)
    except ValueError:
        return None


def candidate_shas(repo: git.Repo) -> dict[int, str]:
    """Candidate id -> commit sha, from the refs alone (no object is read)."""
    shas: dict[int, str] = {}
    for ref in git.Reference.iter_items(repo, common_path=CANDIDATES):
        name = ref.path.rsplit("/", 1)[-1]
        if _ID_RE.match(name):
            shas[int(name)] = git.SymbolicReference.dereference_recursive(repo, ref.path)
    return dict(sorted(shas.items()))


def _blob_text(tree: git.Tree, name: str) -> str:
    return tree[name].data_stream.read().decode("utf-8")


def read_candidate(repo: git.Repo, sha: str) -> tuple[Candidate, dict[str, Any]]:
    """A committed candidate and the journal entry of the attempt that made it."""
    tree = repo.commit(sha).tree
    record = json.loads(_blob_text(tree, METRICS))
    candidate = Candidate.from_dict({**record, "code": _blob_text(tree, PROGRAM), "commit": sha})
    return candidate, json.loads(_blob_text(tree, ATTEMPT))


def read_program(repo: git.Repo, sha: str) -> str:
    return _blob_text(repo.commit(sha).tree, PROGRAM)


def _lock_files(git_dir: Path) -> list[Path]:
    fixed = [git_dir / name for name in ("index.lock", "HEAD.lock", "packed-refs.lock")]
    return [p for p in fixed if p.exists()] + sorted((git_dir / "refs").rglob("*.lock"))


def clear_stale_locks(git_dir: Path) -> list[Path]:
    """Remove `*.lock` files a killed writer left behind (caller holds the run lock).

    kill -9 does not reach a `git` child the writer had started (a checkout, say): it runs on for
    a moment holding its lock. So first give such locks up to LOCK_GRACE_S to go away by
    themselves, and only then remove what is left.
    """
    deadline = time.monotonic() + LOCK_GRACE_S
    while _lock_files(git_dir) and time.monotonic() < deadline:
        time.sleep(0.02)
    stale = _lock_files(git_dir)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale

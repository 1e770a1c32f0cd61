"""Shared helpers for the sandbox tests: the hostile corpus, small windows, process scans, and
running a test in each sandbox that can run here."""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from evaluator.errors import UserError
from evaluator.sandbox import servers
from evaluator.sandbox.candidate_process import CandidateFailure, CandidateProcess, Limits

HOSTILE = Path(__file__).parent / "hostile"
LAYERS, EXPERTS, REPLICAS, GROUPS, NODES, GPUS = 4, 16, 24, 4, 1, 4
ARGS = (REPLICAS, GROUPS, NODES, GPUS)
FAST = Limits(call_timeout_s=5.0, load_timeout_s=10.0, deadline_s=60.0, memory_mb=512)
PREPEND = "# prepend: "
SANDBOXES = ("process", "bwrap")


@functools.cache
def unusable(sandbox: str) -> str | None:
    """Why `sandbox` cannot run candidates here (bwrap missing; as root, a Python installation
    that candidates' uids cannot read), or None."""
    try:
        servers.server_for(sandbox)
    except UserError as error:
        return str(error)
    return None


def in_sandbox(sandbox: str, limits: Limits = FAST) -> Limits:
    """`limits` in `sandbox`; skips the calling test where that sandbox cannot run here."""
    why = unusable(sandbox)
    if why is not None:
        pytest.skip(why)
    return replace(limits, sandbox=sandbox)


def printed(output: str, key: str) -> dict:
    """The JSON a hostile program printed after `key=` (its first such line)."""
    return json.loads(output.split(f"{key}=", 1)[1].splitlines()[0])


def program(name: str, directory: Path, **substitutions: str) -> Path:
    """Write tests/hostile/<name>.py into `directory`, with `__KEY__` placeholders filled in and,
    if its first line says `# prepend: other.py`, that file's text put in front of it."""
    text = (HOSTILE / f"{name}.py").read_text()
    if text.startswith(PREPEND):
        first, _, rest = text.partition("\n")
        text = (HOSTILE / first[len(PREPEND):].strip()).read_text() + "\n" + rest
    for key, value in substitutions.items():
        text = text.replace(f"__{key.upper()}__", value)
    path = directory / f"{name}.py"
    path.write_text(text)
    return path


def window(seed: int) -> torch.Tensor:
    """A distinct [LAYERS, EXPERTS] load window."""
    return torch.rand(LAYERS, EXPERTS, generator=torch.Generator().manual_seed(seed)) * 1000


def failure(path: Path, limits: Limits = FAST, calls: int = 1,
            device: str = "cpu") -> tuple[CandidateFailure, float]:
    """Run `path` (start + `calls` calls), which must fail; the failure and seconds it took."""
    began = time.monotonic()
    with CandidateProcess(path, limits, device) as candidate:
        try:
            candidate.start()
            for i in range(calls):
                candidate.call(window(i), *ARGS)
        except CandidateFailure as exc:
            return exc, time.monotonic() - began
    raise AssertionError(f"{path.name} did not fail")


def processes_named(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose argv[0] is `marker` (the corpus's daemons)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if cmdline.split(b"\0")[0] == marker.encode() and state != "Z":
            found.append(int(entry))
    return found


def wait_until_gone(marker: str, timeout_s: float = 5.0) -> list[int]:
    """Poll until no process carries `marker` (or the timeout); the survivors, if any."""
    end = time.monotonic() + timeout_s
    while (left := processes_named(marker)) and time.monotonic() < end:
        time.sleep(0.05)
    return left


def wait_until_present(marker: str, timeout_s: float = 5.0) -> list[int]:
    """Poll until a process carries `marker` (or the timeout); those found."""
    end = time.monotonic() + timeout_s
    while not (found := processes_named(marker)) and time.monotonic() < end:
        time.sleep(0.01)
    return found

"""The "knowing the future" attack, run for real end to end: a program that carries the quick suite's
published search windows in its own source, recognises the window it is given and returns the seed's
placement fitted on the NEXT window, the one it is scored on. Unchecked it beats the honest seed by
far; the fresh-stream check (evaluator/fresh_stream.py, evaluator/scoring/fresh_check.py) makes the
evaluation INVALID, in-process and through the CLI, while the honest seed stays valid.

A second program reads the windows from the evaluator's own data files (evaluator/workloads/windows)
by path: a working attack where the files are in view, nothing to cheat with in bwrap. (Importing
evaluator.workloads to regenerate the windows fails with ModuleNotFoundError in every sandbox:
tests/integration/test_sandbox_isolation.py attacks that.)
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import io
import json
import lzma
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from paths import REPO
from sandbox_support import in_sandbox, printed
from test_eval_command import eplb

from evaluator.baselines import vectorized_seed
from evaluator.evaluate import EvalOptions, evaluate
from evaluator.sandbox.candidate_process import CandidateProcess, Limits
from evaluator.workloads.scenarios import suite

HONEST = REPO / "evaluator" / "baselines" / "vectorized_seed.py"
SUITE = "quick"
REASON = re.compile(r"(?P<scenario>[^:]+): balancedness (?P<graded>[0-9.]+) on the graded windows but "
                    r"(?P<fresh>[0-9.]+) on fresh windows of the same workloads? \(.*\): "
                    r"the program knows \(or is fitted to\) the graded windows")

# Appended to the vectorised seed (which defines torch, np and rebalance_experts). It knows a published
# window by the digest of its bytes; fresh windows and the reversed warm-up are unknown: answered honestly.
CHEAT = '''

import base64 as _base64
import hashlib as _hashlib
import lzma as _lzma

_honest = rebalance_experts
_PUBLISHED = {published!r}


def _digest(window):
    return _hashlib.sha256(window.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()).hexdigest()


_NEXT = {{}}  # digest of published window i -> published window i + 1 (its loads to within 3%)
for _digests, _shape, _blob in _PUBLISHED:
    _levels = np.frombuffer(_lzma.decompress(_base64.b64decode(_blob)), np.uint8).reshape(_shape)
    _future = torch.from_numpy(np.round(np.exp2(_levels / {top_level} * {top_log2}) - 1).astype(np.float32))
    _NEXT.update(zip(_digests, _future))


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    future = _NEXT.get(_digest(weight))
    return _honest(weight if future is None else future, num_replicas, num_groups, num_nodes, num_gpus)
'''
# The future is carried as log2(count + 1) on 8 bits: the exact windows, compressed, make a source over the
# 256 KiB a message header may hold (evaluator/sandbox/wire.py); 8 bits cost the cheat under 0.005 of its score.
TOP_LOG2, TOP_LEVEL = 22.0, 255


def _digest(window: torch.Tensor) -> str:
    return hashlib.sha256(window.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


def _carried(windows: torch.Tensor) -> tuple[list[str], tuple[int, ...], str]:
    """What the cheat carries of one scenario: the digests of windows 0..n-2 and windows 1..n-1."""
    future = windows[1:].numpy()
    assert future.min() >= 0 and future.max() < 2**TOP_LOG2
    levels = np.round(np.log2(future + 1.0) / TOP_LOG2 * TOP_LEVEL).astype(np.uint8)
    blob = base64.b64encode(lzma.compress(levels.tobytes(), preset=9 | lzma.PRESET_EXTREME)).decode()
    return [_digest(w) for w in windows[:-1]], levels.shape, blob


# The second attack, appended to the vectorised seed: no import of evaluator.workloads (the sandbox makes it
# unimportable: tests/integration/test_sandbox_isolation.py) but its data files read by path, from the
# evaluator's folder (found through a live function of the child, as tests/hostile/import_evaluator.py
# does) or from where the repository lies on this machine. Every published stream's window i -> window i + 1.
READER = '''

import gc as _gc
import glob as _glob
import hashlib as _hashlib
import os as _os
import types as _types

_honest = rebalance_experts


def _digest(window):
    return _hashlib.sha256(window.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()).hexdigest()


def _roots():
    yield {repo!r}
    for obj in _gc.get_objects():
        if isinstance(obj, _types.FunctionType) and (obj.__module__ or "").startswith("evaluator."):
            yield _os.path.dirname(_os.path.dirname(_os.path.dirname(obj.__code__.co_filename)))
            return


def _streams():
    for root in _roots():
        for path in sorted(_glob.glob(_os.path.join(root, "evaluator", "workloads", "windows", "*.npz"))):
            try:
                with np.load(path) as data:
                    for name in ("search", "heldout"):  # byte planes of uint32 counts (published.py)
                        planes = np.ascontiguousarray(np.moveaxis(data[name], 0, -1))
                        yield torch.from_numpy(planes.view("<u4")[..., 0].astype(np.int64))
            except Exception:  # noqa: BLE001
                pass


_NEXT = {{}}
for _stream in _streams():
    for _i in range(_stream.shape[0] - 1):
        _NEXT[_digest(_stream[_i])] = _stream[_i + 1]
print(f"FOUND={{len(_NEXT)}}", flush=True)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    future = _NEXT.get(_digest(weight))
    return _honest(weight if future is None else future, num_replicas, num_groups, num_nodes, num_gpus)
'''


@pytest.fixture(scope="module")
def cheat(tmp_path_factory) -> Path:
    """The cheating program: the vectorised seed plus the published search windows (~180 kB)."""
    published = [_carried(scenario.search_windows()) for scenario in suite(SUITE)]
    path = tmp_path_factory.mktemp("cheat") / "knows_the_future.py"
    path.write_text(HONEST.read_text() + CHEAT.format(published=published, top_log2=TOP_LOG2, top_level=TOP_LEVEL))
    return path


@pytest.fixture(scope="module")
def honest():
    """The honest vectorised seed under the default options (fresh check on)."""
    return evaluate(HONEST, suite(SUITE), SUITE, EvalOptions(device="cpu"))


def test_unchecked_the_cheat_scores_far_above_the_honest_seed(cheat, honest):
    unchecked = evaluate(cheat, suite(SUITE), SUITE, EvalOptions(device="cpu", fresh_check=False))
    assert unchecked.valid, unchecked.error
    assert honest.valid, honest.error
    assert unchecked.fresh_balancedness is None  # control: no fresh stream was run
    print(f"balancedness: cheat unchecked {unchecked.balancedness:.4f}, honest {honest.balancedness:.4f}")
    assert unchecked.balancedness > honest.balancedness + 0.05
    for cheating, fair in zip(unchecked.scenarios, honest.scenarios, strict=True):
        assert cheating.balancedness > fair.balancedness + 0.03, cheating.name


def _assert_caught(reason: str) -> None:
    match = REASON.fullmatch(reason)
    assert match, reason
    assert float(match["graded"]) > float(match["fresh"]) + 0.05, reason


def test_the_fresh_check_makes_the_cheat_invalid_and_keeps_the_honest_seed_valid(cheat, honest):
    checked = evaluate(cheat, suite(SUITE), SUITE, EvalOptions(device="cpu"))
    print(f"reason: {checked.error}")
    assert not checked.valid
    _assert_caught(checked.error)
    assert checked.feedback.startswith(f"INVALID: {checked.error}")
    assert honest.valid and honest.error is None, honest.error
    assert honest.fresh_balancedness is not None  # control: the check ran on the honest seed too


def test_the_cli_reports_the_cheat_invalid(cheat, tmp_path):
    result = eplb("eval", str(cheat), "--suite", SUITE, "--device", "cpu", "--no-speedup", "--json", cache=tmp_path)
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is False
    _assert_caught(data["error"])


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Path:
    """The program that reads the published windows from the evaluator's data files."""
    path = tmp_path_factory.mktemp("reader") / "reads_the_future.py"
    path.write_text(HONEST.read_text() + READER.format(repo=str(REPO)))
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")  # its gc scan touches torch's deprecated attributes
def test_the_reader_finds_the_future_where_the_data_files_are_in_view(reader):
    """Control, outside any sandbox: the reader is a working attack when the files are there."""
    spec = importlib.util.spec_from_file_location("reads_the_future", reader)
    module = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(io.StringIO()):
        spec.loader.exec_module(module)
    for scenario in suite(SUITE):
        windows, s = scenario.search_windows(), scenario.shape
        args = (s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus)
        for now, then in zip(windows[:-1], windows[1:]):
            fitted_on_then = vectorized_seed.rebalance_experts(then, *args)[0]
            assert torch.equal(module.rebalance_experts(now, *args)[0], fitted_on_then)


def test_in_bwrap_the_data_files_are_out_of_view_and_the_reader_scores_as_the_honest_seed(reader, honest):
    limits = in_sandbox("bwrap", Limits())
    with CandidateProcess(reader, limits) as candidate:
        candidate.start()
        assert printed(candidate.output(), "FOUND") == 0  # no window known: the files are not in its view
    unchecked = evaluate(reader, suite(SUITE), SUITE, EvalOptions(device="cpu", fresh_check=False, limits=limits))
    assert unchecked.valid, unchecked.error
    assert unchecked.balancedness == honest.balancedness  # the same placements: nothing to cheat with

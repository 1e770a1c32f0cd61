"""Trace files: streamed JSON and .npz give the same windows; bad files fail with a precise UserError."""
from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from paths import REPO

from evaluator.errors import UserError
from evaluator.workloads.tracefile import TraceFileSource, heldout_count, load_trace, read_load_history, save_npz

ROOT = REPO


def step_loads(num_steps: int, layers: int = 3, experts: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5000, size=(num_steps, layers, experts))


def write_trace(path: Path, loads: np.ndarray, **extra: object) -> Path:
    history = [{"step": i, "logical_expert_load": step.tolist()} for i, step in enumerate(loads)]
    path.write_text(json.dumps({**extra, "load_history": history}, indent=1))
    return path


def expected_windows(loads: np.ndarray, window_steps: int) -> np.ndarray:
    return np.stack([loads[i:i + window_steps].sum(0) for i in range(0, len(loads), window_steps)])


def test_json_windows_are_the_step_sums_and_the_last_window_is_shorter(tmp_path: Path) -> None:
    loads = step_loads(25)
    trace = load_trace(write_trace(tmp_path / "t.json", loads), window_steps=10)
    np.testing.assert_array_equal(trace.windows, expected_windows(loads, 10))
    assert trace.windows.dtype == np.int64
    assert trace.steps.tolist() == [10, 10, 5]
    assert trace.describe() == "3 windows of 10 steps (last 5), 3 layers x 8 experts"


def test_default_window_is_100_steps(tmp_path: Path) -> None:
    trace = load_trace(write_trace(tmp_path / "t.json", step_loads(230)), window_steps=None)
    assert trace.steps.tolist() == [100, 100, 30]


@pytest.mark.parametrize("chunk_chars", [1, 2, 7, 61, 1 << 20])
def test_every_chunk_size_gives_the_same_windows(chunk_chars: int) -> None:
    """Values cut anywhere by a chunk boundary (numbers, keys, objects) must decode the same."""
    loads = step_loads(7, layers=2, experts=5)
    text = json.dumps({"version": 12345, "load_history": [{"logical_expert_load": s.tolist()} for s in loads],
                       "tail": [1.5, "x", None]})
    trace = read_load_history(io.StringIO(text), "t.json", 3, chunk_chars=chunk_chars)
    np.testing.assert_array_equal(trace.windows, expected_windows(loads, 3))


def test_integral_floats_and_gzip_are_accepted(tmp_path: Path) -> None:
    loads = step_loads(12)
    text = json.dumps({"load_history": [{"logical_expert_load": s.astype(float).tolist()} for s in loads]})
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(text.encode()))
    np.testing.assert_array_equal(load_trace(path, 5).windows, expected_windows(loads, 5))


def test_npz_round_trip_is_bit_identical_and_keeps_its_window_length(tmp_path: Path) -> None:
    trace = load_trace(write_trace(tmp_path / "t.json", step_loads(25)), window_steps=10)
    save_npz(trace, tmp_path / "t.npz")
    again = load_trace(tmp_path / "t.npz", window_steps=None)
    np.testing.assert_array_equal(again.windows, trace.windows)
    np.testing.assert_array_equal(again.steps, trace.steps)
    assert again.window_steps == 10
    assert load_trace(tmp_path / "t.npz", window_steps=10).windows.shape == (3, 3, 8)
    with pytest.raises(UserError, match=r"t.npz: holds windows of 10 steps.*--window-steps 20"):
        load_trace(tmp_path / "t.npz", window_steps=20)


def test_windows_are_read_only(tmp_path: Path) -> None:
    windows = load_trace(write_trace(tmp_path / "t.json", step_loads(5)), window_steps=2).windows
    with pytest.raises(ValueError):
        windows[0, 0, 0] = 1


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json", step_loads(4, seed=1))
    first = load_trace(path, 2).windows.copy()
    write_trace(path, step_loads(4, seed=2, experts=9))
    assert load_trace(path, 2).windows.shape != first.shape


GOOD_STEP = '{"logical_expert_load": [[1, 2], [3, 4]]}'


@pytest.mark.parametrize("text, message", [
    ("hello", r"bad.json: is not a JSON object"),
    ("", r"bad.json: is not a JSON object"),
    ('{"other": []}', r"bad.json: has no 'load_history' key"),
    ('{"load_history": []}', r"bad.json: 'load_history' is empty"),
    ('{"load_history": [{"x": 1}]}', r"bad.json: step 0 has no 'logical_expert_load'"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1, 2], [3]]}}]}}',
     r"bad.json: step 1, layer 1 has 1 experts but step 0, layer 0 has 2"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1, 2]]}}]}}',
     r"bad.json: step 1 has 1 layers but step 0 has 2"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1, 2], [3, -4]]}}]}}',
     r"bad.json: step 1, layer 1, expert 1 has load -4; loads are token counts"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1, 2.5], [3, 4]]}}]}}',
     r"bad.json: step 1, layer 0, expert 1: load 2.5 is not a whole number"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1, 2], ["3", 4]]}}]}}',
     r"bad.json: step 1, layer 1, expert 0: load '3' is not a whole number"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1, [2]], [3, 4]]}}]}}',
     r"bad.json: step 1, layer 0, expert 1: load \[2\] is not a whole number"),
    ('{"load_history": [{"logical_expert_load": []}]}', r"bad.json: step 0: 'logical_expert_load' must be"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1, 2], [3, 4',
     r"step 1 is not valid JSON.*ends early"),
    (f'{{"load_history": [{GOOD_STEP}, {GOOD_STEP}', r"bad.json: expected '\]' at character \d+ but found the end"),
    (f'{{"load_history": [{GOOD_STEP} {GOOD_STEP}]}}', r"bad.json: expected '\]' at character \d+ but found '\{'"),
    (f'{{"load_history": [{GOOD_STEP}, {{"logical_expert_load": [[1,, 2], [3, 4]]}}, {", ".join([GOOD_STEP] * 9)}]}}',
     r"bad.json: step 1 is not valid JSON at character \d+: Expecting value$"),
    (f'{{"load_history": [{GOOD_STEP}]}} trailing', r"bad.json: has extra data after the JSON object"),
])
def test_malformed_json_names_the_file_and_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_trace(path, window_steps=1)


def test_bad_arguments_and_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing.json: cannot read the trace"):
        load_trace(tmp_path / "missing.json", 100)
    path = write_trace(tmp_path / "t.json", step_loads(3))
    with pytest.raises(UserError, match=r"--window-steps must be at least 1, got 0"):
        load_trace(path, 0)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match=r"binary.json: cannot read it as a JSON load-history trace"):
        load_trace(tmp_path / "binary.json", 100)
    np.savez(tmp_path / "other.npz", windows=np.zeros((2, 2, 2), dtype=np.int64))
    with pytest.raises(UserError, match=r"other.npz: not an eplb-evolve trace; make one with"):
        load_trace(tmp_path / "other.npz", None)
    good = load_trace(path, 1)
    save_npz(good, tmp_path / "cut.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "cut.npz").read_bytes()[:300])
    with pytest.raises(UserError, match=r"cut.npz: cannot read it as an .npz trace"):
        load_trace(tmp_path / "cut.npz", None)


@pytest.mark.parametrize("num_windows, held", [(1, 0), (9, 0), (10, 2), (14, 2), (15, 3), (50, 10)])
def test_the_last_fifth_is_held_out_when_it_makes_two_windows(num_windows: int, held: int) -> None:
    assert heldout_count(num_windows) == held


def test_trace_source_splits_search_and_heldout(tmp_path: Path) -> None:
    loads = step_loads(100)
    source = TraceFileSource(write_trace(tmp_path / "t.json", loads), window_steps=10)
    windows = expected_windows(loads, 10)
    np.testing.assert_array_equal(source.search(), windows[:8])
    np.testing.assert_array_equal(source.heldout(), windows[8:])
    short = TraceFileSource(tmp_path / "t.json", window_steps=20)
    assert short.search().shape[0] == 5
    with pytest.raises(UserError, match=r"t.json: 5 windows of 20 steps.*too short for held-out windows"):
        short.heldout()
    with pytest.raises(UserError, match=r"t.json: 1 window of 100 steps.*at least 2 windows"):
        TraceFileSource(tmp_path / "t.json", window_steps=100).search()


_MEASURE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from evaluator.workloads.tracefile import load_trace
    def rss_kb(field):  # VmHWM is this process's peak RSS; getrusage's ru_maxrss can carry the
        status = Path("/proc/self/status").read_text()  # pre-exec peak of the forked parent
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field + ":")))
    before = rss_kb("VmRSS")
    windows = load_trace(Path(sys.argv[1]), 100).windows.shape[0]
    print(windows, (rss_kb("VmHWM") - before) * 1024)
""")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from Linux /proc")
def test_a_large_trace_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A ~60 MB trace (DeepSeek-V3 shape) loads with peak RSS growth far below the file size.

    `json.load` grows RSS by ~7x the file size on it (about 400 MB); streaming takes ~11 MB.
    """
    rng = np.random.default_rng(0)
    steps = [json.dumps({"logical_expert_load": rng.integers(10000, 99999, size=(58, 256)).tolist()})
             for _ in range(7)]
    path = tmp_path / "big.json"
    with open(path, "w") as handle:
        handle.write('{"load_history": [')
        handle.write(", ".join(steps[i % len(steps)] for i in range(560)))
        handle.write("]}")
    size = path.stat().st_size
    assert size > 50e6
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    windows, growth = (int(x) for x in done.stdout.split())
    assert windows == 6
    print(f"peak RSS growth {growth / 1e6:.1f} MB for a {size / 1e6:.0f} MB trace")
    assert growth < size / 2, f"peak RSS grew {growth / 1e6:.0f} MB loading a {size / 1e6:.0f} MB trace"

"""`trace convert`: the .npz it writes loads back to the same windows; bad paths are user errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from evaluator.errors import UserError
from evaluator.workloads.tracefile import load_trace
from harness.cli import trace_command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    trace_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["trace", "convert", *argv])


def write_trace(path: Path) -> Path:
    loads = np.random.default_rng(0).integers(0, 100, size=(25, 3, 8))
    path.write_text(json.dumps({"load_history": [{"logical_expert_load": s.tolist()} for s in loads]}))
    return path


def test_convert_writes_windows_that_load_back_identically(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_trace(tmp_path / "t.json")
    assert trace_command.run(parse(str(source), str(tmp_path / "t.npz"), "--window-steps", "10", "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["windows"] == 3 and summary["last_window_steps"] == 5 and summary["experts"] == 8
    np.testing.assert_array_equal(load_trace(tmp_path / "t.npz", None).windows, load_trace(source, 10).windows)


def test_convert_refuses_a_non_npz_output_and_an_unwritable_one(tmp_path: Path) -> None:
    source = write_trace(tmp_path / "t.json")
    with pytest.raises(UserError, match=r"out.json: the output must end in .npz"):
        trace_command.run(parse(str(source), str(tmp_path / "out.json")))
    with pytest.raises(UserError, match=r"t.npz: cannot write it"):
        trace_command.run(parse(str(source), str(tmp_path / "missing" / "t.npz")))

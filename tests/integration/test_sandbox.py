"""CandidateProcess against the hostile corpus: every failure mode ends in a one-line reason, a
detail worth showing the model, and a sandbox that runs the next candidate normally."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import torch
from sandbox_support import ARGS, EXPERTS, FAST, LAYERS, REPLICAS, failure, program, window

from evaluator.errors import UserError
from evaluator.sandbox import privileges, servers
from evaluator.sandbox.candidate_process import CandidateFailure, CandidateProcess, Limits

QUICK = Limits(call_timeout_s=1.0, load_timeout_s=1.0, deadline_s=60.0, memory_mb=128)


def _assert_honest_answer(phy2log: torch.Tensor, log2phy: torch.Tensor, logcnt: torch.Tensor):
    expected = (torch.arange(REPLICAS) % EXPERTS).repeat(LAYERS, 1)
    assert type(phy2log) is torch.Tensor and phy2log.dtype == torch.int64
    assert torch.equal(phy2log, expected)
    assert torch.equal(logcnt, torch.bincount(expected[0], minlength=EXPERTS).repeat(LAYERS, 1))
    assert log2phy.shape == (LAYERS, EXPERTS, 2) and int(log2phy[0, 3, 1]) == 3 + EXPERTS


def _assert_healthy(directory: Path) -> None:
    """The sandbox still runs an honest candidate normally."""
    with CandidateProcess(program("honest", directory), FAST) as candidate:
        candidate.start()
        _assert_honest_answer(*_outputs(candidate.call(window(7), *ARGS)))


def _outputs(result):
    return result.phy2log, result.log2phy, result.logcnt


def test_honest_program_is_run_in_time_order_and_timed(tmp_path):
    with CandidateProcess(program("honest", tmp_path), FAST) as candidate:
        candidate.start()
        for i in range(3):
            result = candidate.call(window(i), *ARGS)
            _assert_honest_answer(*_outputs(result))
            assert 0 < result.runtime_s <= result.round_trip_s < 1.0
        assert candidate.output().count("honest call on (4, 16)\n") == 3
        assert not privileges.is_dumpable()  # the evaluator hid its own /proc/<pid>/environ
        assert servers.server_for(candidate.sandbox).hello["threads"] == 1  # so fork() is safe there
    with pytest.raises(CandidateFailure, match="not running"):
        candidate.call(window(4), *ARGS)
    candidate.close()  # idempotent


FAILURES = [
    ("import_error", QUICK,
     r"ModuleNotFoundError at import: No module named 'eplb_no_such_module_xyz'"),
    ("syntax_error", QUICK, r"SyntaxError at import: invalid syntax \(syntax_error\.py, line 5\)"),
    ("no_entry_point", QUICK,
     r"MissingEntryPoint at import: the program defines no callable rebalance_experts\(\)"),
    ("raise_in_call", QUICK, r"ValueError in call 1: window rejected by candidate"),
    ("sys_exit_call", QUICK, r"SystemExit in call 1: 3"),
    ("os_exit_call", QUICK, r"exited with status 7 during call 1"),
    ("segfault", QUICK, r"killed by SIGSEGV during call 1"),
    ("c_stack_overflow", Limits(call_timeout_s=20, memory_mb=512),
     r"killed by SIGSEGV during call 1|RecursionError in call 1: maximum recursion depth exceeded.*"),
    ("recursion", QUICK, r"RecursionError in call 1: maximum recursion depth exceeded"),
    ("memory_hog", Limits(call_timeout_s=20, memory_mb=128), r"MemoryError in call 1"),
    ("loop_call", QUICK, r"call 1 timed out after 1\.0 s"),
    ("sleep_call", QUICK, r"call 1 timed out after 1\.0 s"),
    ("loop_import", QUICK, r"import timed out after 1\.0 s"),
    ("sleep_import", QUICK, r"import timed out after 1\.0 s"),
    ("sleep_call", Limits(deadline_s=0.5, call_timeout_s=30),
     r"evaluation deadline of 0\.5 s exceeded during call 1"),
    ("output_flood", QUICK, r"call 1 timed out after 1\.0 s"),
    ("returns_none", QUICK, r"BadReturn in call 1: returned NoneType, expected a tuple .*"),
    ("returns_pair", QUICK, r"BadReturn in call 1: returned a tuple of 2 items, expected 3 tensors"),
    ("returns_list", QUICK, r"BadReturn in call 1: returned list, expected a tuple .*"),
    ("returns_generator", QUICK, r"BadReturn in call 1: returned generator, expected a tuple .*"),
    ("returns_non_tensor", QUICK, r"BadReturn in call 1: .* item 0 is list, expected a tensor"),
    ("returns_huge_view", QUICK,
     r"BadReturn in call 1: the outputs hold 26388279066624 bytes, more than the 13568 .*"),
    ("returns_complex", QUICK, r"BadReturn in call 1: output 0 has dtype torch\.complex64, .*"),
]


@pytest.mark.parametrize("name, limits, pattern", FAILURES, ids=[f[0] for f in FAILURES])
def test_failure_gives_one_line_reason_and_the_next_candidate_runs(tmp_path, name, limits, pattern):
    exc, elapsed = failure(program(name, tmp_path), limits)
    assert re.fullmatch(pattern, exc.reason), exc.reason
    assert "\n" not in exc.reason
    timeout = min(limits.deadline_s, max(limits.call_timeout_s, limits.load_timeout_s))
    assert elapsed < timeout + 3.0
    _assert_healthy(tmp_path)


def test_failure_detail_has_the_traceback_and_the_output(tmp_path):
    exc, _ = failure(program("raise_in_call", tmp_path), QUICK)
    assert 'File "raise_in_call.py", line 5, in helper' in exc.detail
    assert 'raise ValueError("window rejected by candidate")' in exc.detail  # source lines quoted
    assert exc.detail.rstrip().endswith("about to fail")
    exc, _ = failure(program("import_error", tmp_path), QUICK)
    assert 'File "import_error.py", line 2' in exc.detail


def test_a_flood_of_output_is_capped_to_head_and_tail(tmp_path):
    limits = Limits(call_timeout_s=1.0, output_cap_bytes=4096)
    with CandidateProcess(program("output_flood", tmp_path), limits) as candidate:
        candidate.start()
        with pytest.raises(CandidateFailure, match="timed out"):
            candidate.call(window(0), *ARGS)
        text = candidate.output()
    assert text.startswith("FLOOD-START\n")
    omitted = int(re.search(r"\[\.\.\. (\d+) bytes of output omitted \.\.\.\]", text).group(1))
    assert omitted > 10 * 2**20 and len(text) < 4096 + 100


def test_output_is_capped_but_a_correct_answer_still_counts(tmp_path):
    limits = Limits(output_cap_bytes=8192)
    with CandidateProcess(program("output_burst", tmp_path), limits) as candidate:
        candidate.start()
        _assert_honest_answer(*_outputs(candidate.call(window(0), *ARGS)))
        text = candidate.output()
    assert text.startswith("BURST-FIRST-LINE\n")
    assert text.endswith("BURST-LAST-LINE\nhonest call on (4, 16)\n")
    assert len(text) < 8192 + 100


def test_hostile_tensor_subclass_arrives_as_plain_tensors_and_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled-in-the-evaluator"
    with CandidateProcess(program("returns_subclass", tmp_path, marker=str(marker)), FAST) as c:
        c.start()
        result = c.call(window(0), *ARGS)
    _assert_honest_answer(*_outputs(result))
    assert all(type(t) is torch.Tensor for t in _outputs(result))
    assert not marker.exists()


def test_unreadable_program_and_bad_limits(tmp_path):
    with pytest.raises(CandidateFailure, match="cannot read the program"):
        CandidateProcess(tmp_path / "missing.py", FAST).start()
    with pytest.raises(UserError, match="unknown sandbox 'docker'"):
        Limits(sandbox="docker")
    with pytest.raises(UserError, match="threads must be positive"):
        Limits(threads=0)


def test_next_candidate_starts_within_half_a_second(tmp_path):
    path = program("honest", tmp_path)
    _assert_healthy(tmp_path)  # the fork server is up
    began = time.monotonic()
    with CandidateProcess(path, FAST) as candidate:
        candidate.start()
        candidate.call(window(0), *ARGS)
    assert time.monotonic() - began < 0.5


def test_candidates_run_concurrently_from_several_threads(tmp_path):
    path = program("honest_sleep", tmp_path)
    errors: list[BaseException] = []

    def evaluate(seed: int) -> None:
        try:
            with CandidateProcess(path, FAST) as candidate:
                candidate.start()
                for i in range(2):
                    result = candidate.call(window(seed * 10 + i), *ARGS)
                    _assert_honest_answer(*_outputs(result))
                    assert result.runtime_s >= 0.2
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate, args=(seed,)) for seed in range(4)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert time.monotonic() - began < 4 * 2 * 0.2  # they overlapped


def test_a_program_too_large_to_load_is_a_failure_not_an_evaluator_crash(tmp_path):
    padding = "x" * (300 * 1024)
    path = tmp_path / "big.py"
    path.write_text(f"PADDING = {padding!r}\n\ndef rebalance_experts(*args):\n    raise RuntimeError('unreached')\n")
    with pytest.raises(CandidateFailure, match=r"the program is too large to load \(\d+ bytes of source"):
        with CandidateProcess(path, FAST) as proc:
            proc.start()

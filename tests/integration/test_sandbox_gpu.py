"""device="cuda": the window is moved to the GPU before the clock starts, and host memory is
capped by polling the child's RSS (RLIMIT_AS cannot cap a CUDA process)."""
from __future__ import annotations

import pytest
import torch
from sandbox_support import ARGS, failure, program, window

from evaluator.sandbox.candidate_process import CandidateProcess, Limits

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_honest_program_gets_its_window_on_the_gpu_and_is_timed(tmp_path):
    with CandidateProcess(program("honest_sleep", tmp_path), Limits(), device="cuda") as candidate:
        candidate.start()
        result = candidate.call(window(0), *ARGS)
    assert result.phy2log.device.type == "cpu" and result.phy2log.shape == (4, 24)
    assert 0.2 <= result.runtime_s <= result.round_trip_s


def test_host_memory_is_capped_on_cuda_too(tmp_path):
    exc, _ = failure(program("memory_hog", tmp_path), Limits(call_timeout_s=60, memory_mb=256),
                     device="cuda")
    assert exc.reason == "killed: memory limit of 256 MB exceeded during call 1"


def test_timing_tampering_is_caught_on_cuda(tmp_path):
    exc, _ = failure(program("clock_patch", tmp_path), Limits(), device="cuda")
    assert exc.reason.startswith("timing tampering: child reported")


def test_queued_gpu_work_is_inside_the_timed_span(tmp_path):
    with CandidateProcess(program("gpu_async", tmp_path), Limits(call_timeout_s=60), device="cuda") as candidate:
        candidate.start()
        result = candidate.call(window(0), *ARGS)
    assert result.phy2log.device.type == "cpu" and result.phy2log.shape == (4, 24)
    assert 0.9 <= result.runtime_s <= result.round_trip_s

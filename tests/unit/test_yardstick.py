"""evaluator.timing.yardstick: a fixed workload (same work every run) and the normalisation arithmetic."""
from __future__ import annotations

import pytest
import torch

from evaluator.timing import yardstick


def test_the_workload_is_the_same_work_every_run():
    loads = yardstick._loads()
    assert torch.equal(loads, yardstick._loads())  # fixed input, whatever ran before
    assert yardstick.workload(loads) == yardstick.workload(loads.clone())


def test_a_run_takes_milliseconds_not_microseconds_or_seconds():
    torch.set_num_threads(1)
    yardstick.run_ns()
    assert 2e5 < min(yardstick.run_ns() for _ in range(3)) < 2e8  # 0.2 ms .. 200 ms on any machine


@pytest.mark.parametrize(("raw", "now", "reference", "expected"), [
    (100.0, 2.0, 2.0, 100.0),  # machine at its calibrated speed: unchanged
    (150.0, 3.0, 2.0, 100.0),  # machine 1.5x slower now: the call counts as 1.5x shorter
    (80.0, 1.6, 2.0, 100.0),  # machine faster now: the call counts as longer
])
def test_normalised_runtime_scales_by_reference_over_yardstick(raw, now, reference, expected):
    assert yardstick.normalised_ms(raw, now, reference) == pytest.approx(expected)

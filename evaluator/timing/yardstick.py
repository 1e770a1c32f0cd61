"""The yardstick: a fixed reference workload timed beside every candidate call, so runtimes can be
normalised for the machine's momentary speed.

Why: on a shared or virtual machine the host's speed swings by up to 2x from one second to the
next (measured on the 2-core development VM: identical in-process calls of the seed took 16 ms in
one stretch and 32 ms in the next), so two evaluations of the same program minutes apart could
differ by 10-15% in median runtime, enough to reorder candidates in a search. Timing this
workload on the same core just before and just after each call and scaling the call by
`reference / yardstick` cancels most of that (measured over 8-12 evaluations of the seed on
`quick`: a CV of 3-6% where the wall-clock one was 10-17%).

The workload looks like an EPLB program, because the correction is only as good as the resemblance:
a greedy packing loop of small torch ops (argmin, gather, scatter) with Python bookkeeping, on one
thread, about 4 ms long (a 2 ms one normalised no better; a running median over neighbouring
calls did worse: the speed changes within a few hundred milliseconds, so only the runs right
beside a call count). It runs in the trusted keeper with the candidate's processes stopped
(keeper.py), never in the candidate's own process, so a candidate cannot slow it down to make
itself look faster; and one untimed pass goes first, so what the candidate left in the caches
(code and data evicted) is paid for there rather than counted as a slow machine.

`reference` is this machine's calibrated yardstick time (evaluator.timing.timing_reference), so normalised
runtimes still read as milliseconds on this machine at its typical speed. The scaling assumes the
call's time follows the CPU's speed, as an EPLB program's does; time spent sleeping or waiting on a
GPU is scaled as well (on a dedicated machine, where the yardstick stays at its reference, the
factor is ~1 anyway). `--timing wall` reports plain wall clock.
"""
from __future__ import annotations

import time

import torch

LAYERS, ITEMS, PACKS, PASSES = 16, 64, 8, 6


def _loads() -> torch.Tensor:
    return torch.rand(LAYERS, ITEMS, generator=torch.Generator().manual_seed(0)) * 100


def workload(loads: torch.Tensor, passes: int = PASSES) -> float:
    """Greedy heaviest-first packing of every row, `passes` times; returns a checksum (so the work
    cannot be skipped)."""
    total = 0.0
    for _ in range(passes):
        order = torch.argsort(loads, dim=-1, descending=True, stable=True)
        packs = torch.zeros(LAYERS, PACKS)
        sizes = [0] * PACKS
        for column in range(ITEMS):
            item = loads.gather(-1, order[:, column:column + 1])
            pack = packs.argmin(-1, keepdim=True)
            packs.scatter_add_(-1, pack, item)
            sizes[column % PACKS] += 1
        total += float(packs.max()) + sum(sizes)
    return total


def run_ns() -> int:
    """One timed run of the workload after an untimed pass, in nanoseconds (single-threaded torch
    is the caller's job)."""
    loads = _loads()
    workload(loads, 1)
    started = time.perf_counter_ns()
    workload(loads)
    return time.perf_counter_ns() - started


def normalised_ms(raw_ms: float, yardstick_ms: float, reference_ms: float) -> float:
    """A call's runtime at the machine's calibrated speed: raw x reference / yardstick now."""
    return raw_ms * reference_ms / yardstick_ms

"""Repeatable timing: core claims and pinning, the yardstick timed beside each call, and this
machine's calibrated reference (cached)."""

from evaluator.timing.cores import claimed, core_slots, physical_cores
from evaluator.timing.timing_reference import reference_ms
from evaluator.timing.yardstick import normalised_ms

__all__ = ["claimed", "core_slots", "physical_cores", "normalised_ms", "reference_ms"]

"""Workloads: deployment shapes, the calibrated synthetic trace generator, real trace files, and the
named suites of scenarios built from them (search and held-out windows)."""

from evaluator.workloads.scenarios import Scenario, Shape, suite, suite_names, trace_scenarios

__all__ = ["Shape", "Scenario", "suite", "suite_names", "trace_scenarios"]

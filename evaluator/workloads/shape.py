"""A deployment's shape: layers, experts, physical slots, expert groups, nodes and GPUs.

Its own module because both the scenarios (shape + windows) and the deployment constants of the
cost model (evaluator/workloads/deployment.py) are about a shape, and the scenarios carry those
constants.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """A deployment: L layers x E logical experts placed on R physical slots over G GPUs in N nodes."""

    num_layers: int
    num_experts: int
    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int

"""Deployment shapes, scenarios (a shape plus a load trace cut into windows) and named suites."""
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

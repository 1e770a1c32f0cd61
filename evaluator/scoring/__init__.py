"""Scoring (pure): checks a placement against every constraint, and turns placements and loads into
balancedness and the combined score."""

from evaluator.scoring.metrics import balancedness, combined_score, placement_balancedness
from evaluator.scoring.validate import validate_placement

__all__ = ["validate_placement", "balancedness", "placement_balancedness", "combined_score"]

"""The search: the population (islands, selection, Pareto archive), one attempt's propose-and-fix
turns, and the controller loop that plans, evaluates and records candidates."""

from harness.search.population import Population, Migration
from harness.search.pareto import ParetoArchive
from harness.search.selection import PowerLaw, weighted_index
from harness.search.attempt import Plan, Proposed, propose
from harness.search.controller import Controller, Tally, Recorded

__all__ = ["Population", "Migration", "ParetoArchive", "PowerLaw", "weighted_index", "Plan", "Proposed", "propose", "Controller", "Tally", "Recorded"]

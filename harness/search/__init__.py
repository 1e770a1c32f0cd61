"""The search: the population (islands, selection, Pareto archive), the Attempt record carried from
plan to candidate, one attempt's propose-and-fix turns, and the controller loop that records them."""

from harness.search.attempt import propose
from harness.search.attempt_record import Attempt, Call, Plan
from harness.search.controller import Controller, Tally
from harness.search.pareto import ParetoArchive
from harness.search.population import Migration, Population
from harness.search.recording import Recorded, read_recording
from harness.search.selection import PowerLaw, weighted_index

__all__ = ["Attempt", "Call", "Controller", "Migration", "ParetoArchive", "Plan", "Population", "PowerLaw",
           "Recorded", "Tally", "propose", "read_recording", "weighted_index"]

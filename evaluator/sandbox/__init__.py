"""The isolated candidate process: fork servers, the trusted keeper, limits, privilege drop, process
trees, the no-pickle wire format and output capture. It runs code; it does not score it."""

from evaluator.sandbox.candidate_process import CallResult, CandidateFailure, CandidateProcess, Limits
from evaluator.sandbox.servers import stop_all

__all__ = ["CandidateProcess", "CandidateFailure", "CallResult", "Limits", "stop_all"]

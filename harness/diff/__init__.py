"""The diff engine (pure): parse an LLM reply into SEARCH/REPLACE blocks or a rewrite, locate each
block in the program, guard the edit, and apply it. Imports nothing else of ours."""

from harness.diff.errors import EngineError
from harness.diff.guards import GuardError, find_regions
from harness.diff.matching import MatchError, locate
from harness.diff.patch import BlockOutcome, PatchResult, apply_edits
from harness.diff.response import EditBlock, Response, ResponseError, parse_response

__all__ = ["EngineError", "Response", "ResponseError", "EditBlock", "parse_response", "MatchError", "locate",
           "GuardError", "find_regions", "BlockOutcome", "PatchResult", "apply_edits"]

"""What became of an attempt: the one set of statuses the loop, the journal, the commits and the
review commands share.

A `StrEnum`, so a status is written as its plain value (`"patch_failed"`) in the journal, in
`metrics.json` and in the `Status:` commit trailer, exactly as before it was an enum: runs written
earlier load unchanged, and `jq`/`git log` queries keep working.
"""
from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    # An evaluated candidate (committed to the run).
    VALID = "valid"
    INVALID = "invalid"
    SCREENED = "screened"  # the cascade's quick screen scored it too low for the full suite
    # A proposal on its way to evaluation (never journaled: the evaluation replaces it).
    APPLIED = "applied"
    # An attempt that produced nothing to evaluate (journaled only).
    DUPLICATE = "duplicate"  # the program repeats one evaluated or being evaluated
    PARSE_FAILED = "parse_failed"  # the answer is not in the response format
    PATCH_FAILED = "patch_failed"  # its edits do not apply to the parent
    PROPOSER_ERROR = "proposer_error"  # the proposer failed (a bad request, a replay that diverged, a bug)
    ENDPOINT_ERROR = "endpoint_error"  # the model endpoint failed after its retries: the harness's problem
    BUDGET_EXHAUSTED = "budget_exhausted"  # max_cost reached before an answer came
    INTERRUPTED = "interrupted"  # cut short by Ctrl-C or a crash; journaled when the run is resumed


# The failures that are the model's own doing, and so are shown to it in later prompts.
MODEL_MISTAKES = frozenset({Status.DUPLICATE, Status.PARSE_FAILED, Status.PATCH_FAILED})

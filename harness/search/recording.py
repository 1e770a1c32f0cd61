"""What `--proposer replay` follows besides the recorded answers: each recorded attempt's decisions.

The answers themselves are the replay proposer's (`harness.proposers.replay`, by prompt hash).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evaluator.errors import UserError
from harness.store import journal
from harness.store.run_store import JOURNAL


@dataclass(frozen=True)
class Recorded:
    """One attempt of an earlier run, as its journal recorded it: where it bred (island, parents) and
    the first conversation it sent (None when no call got an answer).

    Replaying these decisions, not re-deciding them, is what makes a replay reproduce the run:
    parent selection follows scores, and scores carry timing noise (runtime is part of
    combined_score), so a re-decided replay would drift at the first near-tie; and the prompt
    quotes the parent's measured runtime, so a rebuilt prompt would not hash like the recorded one.
    """

    island: int
    parent_ids: tuple[int, ...]
    messages: tuple[dict[str, str], ...] | None


def read_recording(run_dir: Path) -> dict[int, Recorded]:
    """The recorded decisions of the run in `run_dir`, by attempt; UserError naming the attempt whose
    recorded prompt cannot be read."""
    recording: dict[int, Recorded] = {}
    for attempt, entry in journal.outcomes(journal.read(run_dir / JOURNAL)).items():
        parents, calls = entry.get("parent_ids"), entry.get("calls")
        if attempt < 1 or not parents:
            continue  # the seed, or an attempt cut short before it recorded its decision
        try:
            messages = None
            if calls:
                prompt = run_dir / calls[0]["prompt"]
                messages = tuple(json.loads(prompt.read_text(encoding="utf-8")))
            recording[attempt] = Recorded(int(entry["island"]), tuple(int(p) for p in parents), messages)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"replay: {run_dir}: attempt {attempt}: cannot read its recorded prompt "
                            f"({exc})") from None
    return recording

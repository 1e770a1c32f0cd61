"""Replays the recorded answers of an earlier run, so the run can be reproduced exactly.

Answers are looked up by prompt hash; a prompt asked several times gets its answers in the order
they were recorded. Answers alone do not fix a run's course (parent choice follows scores, which
carry timing noise, and prompts quote measured runtimes), so the controller also follows each
recorded attempt's island, parents and first prompt (`harness.search.controller.Recorded`); together
they reproduce the run without a model or network.

Contract with the run directory: `journal.jsonl` holds one JSON object per line; objects with
a `calls` list record proposer calls as {"prompt_hash", "response" (artifact path relative to
the run directory), "model", "prompt_tokens", "completion_tokens", "cost", "latency_s"}, and
"finish_reason" where the recording has it (older runs do not: None then).

Accounting: a replayed proposal reports the *recorded* model, tokens, cost and latency, not
zeros. Anything the controller decides from them (a max_cost stop, a per-dollar model bandit)
must decide the same way for the replay to follow the original; the proposer's name ("replay")
is what tells a report that no money was spent this time.
"""
from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path

from evaluator.errors import UserError
from harness.proposers.base import Proposal, ProposalRequest, ProposerError


def _load(run_dir: Path) -> dict[str, deque[Proposal]]:
    """Recorded answers by prompt hash, in journal order; any defect is a UserError naming its line."""
    journal = run_dir / "journal.jsonl"
    if not journal.is_file():
        raise UserError(f"replay: no journal at {journal}; give the directory of an earlier run")
    answers: dict[str, deque[Proposal]] = {}
    for number, line in enumerate(journal.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            for call in entry.get("calls", ()) if isinstance(entry, dict) else ():
                path = run_dir / call["response"]
                if not path.is_file():
                    raise UserError(f"replay: {journal}:{number} names the response {call['response']}, "
                                    f"which is missing from the run directory")
                finish = call.get("finish_reason")
                proposal = Proposal(text=path.read_text(encoding="utf-8"), model=str(call["model"]),
                                    prompt_tokens=int(call["prompt_tokens"]),
                                    completion_tokens=int(call["completion_tokens"]),
                                    cost=float(call["cost"]), latency_s=float(call["latency_s"]),
                                    finish_reason=None if finish is None else str(finish))
                answers.setdefault(str(call["prompt_hash"]), deque()).append(proposal)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"replay: {journal}:{number} is not a valid journal entry ({exc!r})") from None
    return answers


class ReplayProposer:
    """Serves recorded answers by prompt hash; thread-safe."""

    name = "replay"

    def __init__(self, run_dir: Path | str) -> None:
        self._answers = _load(Path(run_dir))
        self._lock = threading.Lock()
        self._served = 0

    @property
    def remaining(self) -> int:
        """Recorded answers not served yet."""
        with self._lock:
            return sum(len(q) for q in self._answers.values())

    def propose(self, request: ProposalRequest) -> Proposal:
        with self._lock:
            self._served += 1
            queue = self._answers.get(request.prompt_hash)
            if not queue:
                raise ProposerError(f"replay: no recorded response for prompt {request.prompt_hash[:12]} "
                                    f"(the run diverged from the recording at attempt {self._served}?)")
            return queue.popleft()

"""Replay serves an earlier run's recorded answers by prompt hash, in recorded order."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluator.errors import UserError
from harness.proposers.base import ProposalRequest, ProposerError, prompt_hash
from harness.proposers.replay import ReplayProposer


def messages(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def request(text: str) -> ProposalRequest:
    msgs = messages(text)
    return ProposalRequest(messages=msgs, prompt_hash=prompt_hash(msgs), parent_code="", crossover=None, seed=1)


def call(run: Path, prompt: str, answer: str, index: int, model: str = "m1") -> dict:
    artifact = Path("artifacts") / f"response_{index}.txt"
    (run / artifact).parent.mkdir(parents=True, exist_ok=True)
    (run / artifact).write_text(answer, encoding="utf-8")
    return {"prompt_hash": prompt_hash(messages(prompt)), "response": str(artifact), "model": model,
            "prompt_tokens": 100 + index, "completion_tokens": 10 + index, "cost": 0.01 * index,
            "latency_s": 1.5}


def write_journal(run: Path, entries: list[dict]) -> None:
    (run / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


def test_answers_are_served_by_hash_and_in_recorded_order(tmp_path):
    write_journal(tmp_path, [
        {"event": "start"},  # entries without calls are ignored
        {"calls": [call(tmp_path, "A", "first A", 1), call(tmp_path, "A", "second A", 2)]},
        {"calls": [call(tmp_path, "B", "only B", 3, model="m2")]},
    ])
    replay = ReplayProposer(tmp_path)
    assert replay.remaining == 3
    b = replay.propose(request("B"))
    assert (b.text, b.model, b.prompt_tokens, b.completion_tokens, b.latency_s) == ("only B", "m2", 103, 13, 1.5)
    assert b.cost == pytest.approx(0.03)  # the recorded cost, so budget decisions replay identically
    assert replay.propose(request("A")).text == "first A"
    assert replay.propose(request("A")).text == "second A"
    assert replay.remaining == 0


def test_a_prompt_with_no_answer_left_reports_where_the_run_diverged(tmp_path):
    write_journal(tmp_path, [{"calls": [call(tmp_path, "A", "only A", 1)]}])
    replay = ReplayProposer(tmp_path)
    replay.propose(request("A"))
    with pytest.raises(ProposerError) as info:
        replay.propose(request("A"))
    expected = prompt_hash(messages("A"))[:12]
    assert str(info.value) == (f"replay: no recorded response for prompt {expected} "
                               f"(the run diverged from the recording at attempt 2?)")


def test_a_missing_journal_or_artifact_is_a_user_error_up_front(tmp_path):
    with pytest.raises(UserError, match="no journal"):
        ReplayProposer(tmp_path)
    entry = call(tmp_path, "A", "x", 1)
    (tmp_path / entry["response"]).unlink()
    write_journal(tmp_path, [{"calls": [entry]}])
    with pytest.raises(UserError, match=r"journal.jsonl:1 names the response artifacts/response_1.txt"):
        ReplayProposer(tmp_path)


def test_a_corrupt_journal_line_is_named(tmp_path):
    (tmp_path / "journal.jsonl").write_text('{"calls": []}\n{not json\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"journal.jsonl:2 is not a valid journal entry"):
        ReplayProposer(tmp_path)


def test_the_recorded_finish_reason_is_replayed_and_older_runs_have_none(tmp_path):
    cut = {**call(tmp_path, "A", "cut off", 1), "finish_reason": "length"}
    write_journal(tmp_path, [{"calls": [cut, call(tmp_path, "B", "old run", 2)]}])
    replay = ReplayProposer(tmp_path)
    assert replay.propose(request("A")).finish_reason == "length"
    assert replay.propose(request("B")).finish_reason is None

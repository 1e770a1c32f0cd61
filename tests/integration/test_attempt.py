"""One attempt's proposal stage (ask -> parse -> apply -> fix retries), with the real LLM proposer
talking to the real test HTTP server through the openai client, and the real offline proposer."""
from __future__ import annotations

import pytest
from openai_server import FakeOpenAIServer, malformed, ok, rate_limited, server_error

from harness.diff.patch import apply_edits
from harness.diff.response import ResponseError, parse_response
from harness.proposers.base import prompt_hash
from harness.proposers.llm import LLMOptions, LLMProposer
from harness.proposers.moves import LIBRARY
from harness.proposers.mutate import MutateProposer, format_response
from harness.proposers.prompts import build_cut_off_message, build_fix_message
from harness.search.attempt import propose
from harness.search.attempt_record import Attempt, Call, Plan
from harness.store.candidate import code_hash
from harness.store.journal import Spend
from harness.store.status import Status
from seed_program import SEED_PATH

SEED = SEED_PATH.read_text(encoding="utf-8")
MOVES = {move.name: move for move in LIBRARY}
GLOBAL = MOVES["global_policy"]
MESSAGES = ({"role": "system", "content": "format rules"}, {"role": "user", "content": "improve the program"})


def good_answer(move=GLOBAL) -> str:
    return "I will do this.\n\n" + format_response(move.name, move.description, move.edits)


def bad_answer() -> str:
    """The global-policy move with a SEARCH line the program does not contain."""
    (search, replace), = GLOBAL.edits
    wrong = search.replace("if num_groups % num_nodes == 0:", "if num_groups % num_nodes == 3 and flag:")
    assert wrong != search
    return format_response("global_policy_typo", "Same idea, miscopied.", ((wrong, replace),))


def patch_error(text: str) -> str:
    return apply_edits(SEED, parse_response(text)).summary()


def plan(seed: int = 5) -> Attempt:
    return Attempt(Plan(attempt=3, island=1, parent_id=0, parent_code=SEED, messages=MESSAGES, seed=seed))


def proposer(server: FakeOpenAIServer, **overrides) -> LLMProposer:
    options = dict(models=(("test-model", 1.0),), api_base=server.url, timeout_s=5.0, retries=2,
                   backoff_base_s=0.01, backoff_max_s=0.05, prices={"test-model": (2.0, 10.0)})
    options.update(overrides)
    return LLMProposer(LLMOptions(**options), environ={"OPENAI_API_KEY": "sk-test"}, sleep=lambda _s: None)


def test_an_answer_that_applies_gives_the_new_program_with_its_tokens_and_cost(openai_server):
    openai_server.push(ok(good_answer(), usage=(1200, 300)))
    result = propose(plan(), proposer(openai_server), fix_attempts=1)
    assert result.status is Status.APPLIED and result.error is None
    assert result.code == GLOBAL.apply(SEED) and result.code_hash == code_hash(result.code)
    assert result.response.name == "global_policy"
    assert (result.spend.prompt_tokens, result.spend.completion_tokens, result.model) == (1200, 300, "test-model")
    assert result.spend.cost == pytest.approx((1200 * 2.0 + 300 * 10.0) / 1e6)
    assert [b["status"] for b in result.blocks] == ["exact"]
    (call,) = result.calls
    assert call.messages == MESSAGES and call.prompt_hash == prompt_hash(MESSAGES)
    assert call.proposal.finish_reason == "stop" and call.record()["finish_reason"] == "stop"
    (request,) = openai_server.chat_requests
    assert request.body["messages"] == list(MESSAGES)


def test_a_search_that_misses_goes_back_in_the_same_conversation_with_the_exact_error(openai_server):
    first, error = bad_answer(), patch_error(bad_answer())
    assert "block 1 failed" in error
    openai_server.push(ok(first, usage=(1000, 100)), ok(good_answer(), usage=(1500, 200)))
    result = propose(plan(), proposer(openai_server), fix_attempts=1)

    assert result.status is Status.APPLIED and result.code == GLOBAL.apply(SEED)
    first_request, second_request = openai_server.chat_requests
    sent = second_request.body["messages"]
    assert sent[:2] == list(MESSAGES)
    assert sent[2] == {"role": "assistant", "content": first}
    assert sent[3] == build_fix_message(error) and error in sent[3]["content"]
    assert len(sent) == 4
    # both calls are accounted for and recorded with the conversation each one saw
    assert (result.spend.prompt_tokens, result.spend.completion_tokens) == (2500, 300)
    assert result.spend.cost == pytest.approx((2500 * 2.0 + 300 * 10.0) / 1e6)
    assert [c.prompt_hash for c in result.calls] == [prompt_hash(MESSAGES), prompt_hash(tuple(sent))]


@pytest.mark.parametrize("fix_attempts", [0, 2])
def test_fix_requests_stop_after_fix_attempts_and_report_the_last_error(openai_server, fix_attempts):
    answers = [bad_answer()] * (fix_attempts + 1)
    openai_server.push(*(ok(a) for a in answers), ok(good_answer()))  # one more is ready but never asked for
    result = propose(plan(), proposer(openai_server), fix_attempts=fix_attempts)
    assert result.status is Status.PATCH_FAILED and result.code is None
    assert result.error == patch_error(bad_answer())
    assert len(openai_server.chat_requests) == fix_attempts + 1 == len(result.calls)
    assert [b["status"] for b in result.blocks] == ["failed"]
    last = openai_server.chat_requests[-1].body["messages"]
    assert len(last) == 2 + 2 * fix_attempts  # the conversation grows by answer + error each turn


def test_an_unparsable_answer_is_sent_back_with_the_parser_reason(openai_server):
    rambling = "I think the packing could be faster, but I am not sure how."
    with pytest.raises(ResponseError) as parsed:
        parse_response(rambling)
    openai_server.push(ok(rambling), ok(rambling))
    result = propose(plan(), proposer(openai_server), fix_attempts=1)
    assert result.status is Status.PARSE_FAILED and result.error == parsed.value.reason
    assert openai_server.chat_requests[1].body["messages"][-1] == build_fix_message(parsed.value.reason)


def test_transient_failures_are_retried_inside_one_call(openai_server):
    openai_server.push(server_error(500), rate_limited("0"), malformed(), ok(good_answer(), usage=(10, 5)))
    result = propose(plan(), proposer(openai_server, retries=3), fix_attempts=0)
    assert result.status is Status.APPLIED
    assert len(openai_server.chat_requests) == 4 and len(result.calls) == 1
    assert (result.spend.prompt_tokens, result.spend.completion_tokens) == (10, 5)


def test_an_endpoint_that_keeps_failing_is_the_harnesss_problem_and_the_answers_error_is_kept(openai_server):
    openai_server.push(ok(bad_answer()))  # the first turn works, the fix turn meets a dead server
    openai_server.fallback = lambda _r: server_error(500, "upstream overloaded")
    result = propose(plan(), proposer(openai_server, retries=1), fix_attempts=1)
    assert result.status is Status.ENDPOINT_ERROR and result.code is None
    assert "HTTP 500: upstream overloaded" in result.error and "gave up after 2 attempts" in result.error
    assert len(result.calls) == 1  # the answer that was received is kept (journal, artifacts, tokens)
    # the real trouble with that answer is kept beside the outage, and it alone is the model's mistake
    assert (result.answer_status, result.answer_error) == (Status.PATCH_FAILED, patch_error(bad_answer()))
    assert result.mistake() == patch_error(bad_answer())
    entry = result.journal_entry()
    assert (entry["status"], entry["answer_status"], entry["answer_error"]) == \
        ("endpoint_error", "patch_failed", patch_error(bad_answer()))


def test_an_endpoint_failure_before_any_answer_is_no_mistake_of_the_model(openai_server):
    openai_server.fallback = lambda _r: server_error(503, "down for maintenance")
    result = propose(plan(), proposer(openai_server, retries=0), fix_attempts=1)
    assert result.status is Status.ENDPOINT_ERROR and result.calls == ()
    assert result.mistake() is None and "answer_status" not in result.journal_entry()


def test_an_answer_cut_off_at_the_output_limit_is_told_so_and_asked_to_be_shorter(openai_server):
    cut = good_answer()[: len(good_answer()) // 2]  # stopped mid-DIFF
    openai_server.push(ok(cut, finish_reason="length"), ok(good_answer()))
    result = propose(plan(), proposer(openai_server), fix_attempts=1, max_output_tokens=512)
    assert result.status is Status.APPLIED
    sent = openai_server.chat_requests[1].body["messages"]
    assert sent[-2] == {"role": "assistant", "content": cut}
    assert sent[-1] == build_cut_off_message(512) and "512" in sent[-1]["content"]
    assert [c.proposal.finish_reason for c in result.calls] == ["length", "stop"]


def test_a_complete_answer_that_fails_gets_the_exact_error_not_the_cut_off_turn(openai_server):
    openai_server.push(ok(bad_answer(), finish_reason="stop"), ok(good_answer()))
    propose(plan(), proposer(openai_server), fix_attempts=1, max_output_tokens=512)
    assert openai_server.chat_requests[1].body["messages"][-1] == build_fix_message(patch_error(bad_answer()))


def test_each_call_is_handed_over_as_it_returns_before_its_answer_is_judged(openai_server):
    openai_server.push(ok(bad_answer(), usage=(700, 70)), ok(good_answer(), usage=(900, 90)))
    seen: list[tuple[int, int, Status | None]] = []

    def on_call(attempt: Attempt, call: Call) -> Call:
        seen.append((call.number, len(attempt.calls), attempt.status))
        return Call(call.number, call.messages, call.prompt_hash, call.proposal, f"prompt-{call.number}.txt")

    result = propose(plan(), proposer(openai_server), fix_attempts=1, on_call=on_call)
    assert seen == [(1, 0, None), (2, 1, Status.PATCH_FAILED)]  # the second before its answer was parsed
    assert [c.prompt_file for c in result.calls] == ["prompt-1.txt", "prompt-2.txt"]  # kept as filed
    assert [c["prompt_tokens"] for c in result.journal_entry()["calls"]] == [700, 900]


def test_a_proposer_that_raises_anything_ends_the_attempt_with_its_calls_kept(openai_server):
    class Flaky:
        name = "flaky"

        def __init__(self) -> None:
            self.inner, self.calls = proposer(openai_server), 0

        def propose(self, request):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("a proposer bug")
            return self.inner.propose(request)

    openai_server.push(ok(bad_answer()))
    result = propose(plan(), Flaky(), fix_attempts=2)
    assert result.status is Status.PROPOSER_ERROR and result.error == "RuntimeError: a proposer bug"
    assert len(result.calls) == 1 and result.answer_status is Status.PATCH_FAILED


def test_the_money_limit_ends_the_attempt_as_budget_exhausted(openai_server):
    openai_server.push(ok(bad_answer(), usage=(1_000_000, 0)))  # $2 at $2/Mtok
    result = propose(plan(), proposer(openai_server, max_cost=1.0), fix_attempts=3)
    assert result.status is Status.BUDGET_EXHAUSTED and "max_cost" in result.error
    assert len(openai_server.chat_requests) == 1 and result.spend.cost == pytest.approx(2.0)


def test_the_offline_proposer_goes_through_the_same_stage_reproducibly():
    first = propose(plan(seed=11), MutateProposer(), fix_attempts=1)
    again = propose(plan(seed=11), MutateProposer(), fix_attempts=1)
    assert first.status is Status.APPLIED and first.code != SEED
    assert first.code == again.code and first.response == again.response
    assert first.model == "mutate" and first.spend == Spend()
    others = {propose(plan(seed=s), MutateProposer(), 1).code for s in range(12)}
    assert len(others) >= 3  # different seeds draw different moves


def test_a_known_program_is_sent_back_like_a_patch_error(openai_server):
    seen = {code_hash(GLOBAL.apply(SEED)): "same program as candidate 4 (global_policy)"}
    openai_server.push(ok(good_answer()), ok(good_answer()), ok(good_answer(MOVES["shrink_loads"])))
    result = propose(plan(), proposer(openai_server), fix_attempts=1, known=seen.get)
    assert result.status is Status.DUPLICATE and result.code is None
    assert result.error == "same program as candidate 4 (global_policy)"
    retry = openai_server.chat_requests[1].body["messages"]
    assert retry[-2]["content"] == good_answer() and "same program as candidate 4" in retry[-1]["content"]

    result = propose(plan(), proposer(openai_server), fix_attempts=1, known=seen.get)
    assert result.status is Status.APPLIED and result.code == MOVES["shrink_loads"].apply(SEED)


def test_a_cut_off_answer_is_never_applied_even_when_what_arrived_parses(openai_server):
    # A reasoning model whose <think> opened in the chat template leaves no marker: cut off mid-thought,
    # its draft edit would parse and apply. Only the finish reason tells.
    openai_server.push(ok(good_answer(), finish_reason="length"), ok(good_answer()))
    result = propose(plan(), proposer(openai_server), fix_attempts=0, max_output_tokens=512)
    assert result.status is Status.PARSE_FAILED and result.code is None
    assert "cut off at the output limit" in (result.error or "")

"""One attempt's proposal stage (ask -> parse -> apply -> fix retries), with the real LLM proposer
talking to the real test HTTP server through the openai client, and the real offline proposer."""
from __future__ import annotations

import pytest

from harness.search.attempt import Plan, propose
from harness.store.candidate import code_hash
from harness.diff.patch import apply_edits
from harness.proposers.prompts import build_fix_message
from harness.proposers.base import prompt_hash
from harness.proposers.llm import LLMOptions, LLMProposer
from harness.proposers.moves import LIBRARY
from harness.proposers.mutate import MutateProposer, format_response
from harness.diff.response import ResponseError, parse_response
from openai_server import FakeOpenAIServer, malformed, ok, rate_limited, server_error
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


def plan(seed: int = 5) -> Plan:
    return Plan(attempt=3, island=1, parent_id=0, parent_code=SEED, messages=MESSAGES, seed=seed)


def proposer(server: FakeOpenAIServer, **overrides) -> LLMProposer:
    options = dict(models=(("test-model", 1.0),), api_base=server.url, timeout_s=5.0, retries=2,
                   backoff_base_s=0.01, backoff_max_s=0.05, prices={"test-model": (2.0, 10.0)})
    options.update(overrides)
    return LLMProposer(LLMOptions(**options), environ={"OPENAI_API_KEY": "sk-test"}, sleep=lambda _s: None)


def test_an_answer_that_applies_gives_the_new_program_with_its_tokens_and_cost(openai_server):
    openai_server.push(ok(good_answer(), usage=(1200, 300)))
    result = propose(plan(), proposer(openai_server), fix_attempts=1)
    assert result.status == "applied" and result.error is None
    assert result.code == GLOBAL.apply(SEED) and result.code_hash == code_hash(result.code)
    assert result.response.name == "global_policy"
    assert result.tokens == (1200, 300) and result.model == "test-model"
    assert result.cost == pytest.approx((1200 * 2.0 + 300 * 10.0) / 1e6)
    assert [b["status"] for b in result.blocks] == ["exact"]
    (call,) = result.calls
    assert call.messages == MESSAGES and call.prompt_hash == prompt_hash(MESSAGES)
    (request,) = openai_server.chat_requests
    assert request.body["messages"] == list(MESSAGES)


def test_a_search_that_misses_goes_back_in_the_same_conversation_with_the_exact_error(openai_server):
    first, error = bad_answer(), patch_error(bad_answer())
    assert "block 1 failed" in error
    openai_server.push(ok(first, usage=(1000, 100)), ok(good_answer(), usage=(1500, 200)))
    result = propose(plan(), proposer(openai_server), fix_attempts=1)

    assert result.status == "applied" and result.code == GLOBAL.apply(SEED)
    first_request, second_request = openai_server.chat_requests
    sent = second_request.body["messages"]
    assert sent[:2] == list(MESSAGES)
    assert sent[2] == {"role": "assistant", "content": first}
    assert sent[3] == build_fix_message(error) and error in sent[3]["content"]
    assert len(sent) == 4
    # both calls are accounted for and recorded with the conversation each one saw
    assert result.tokens == (2500, 300)
    assert result.cost == pytest.approx((2500 * 2.0 + 300 * 10.0) / 1e6)
    assert [c.prompt_hash for c in result.calls] == [prompt_hash(MESSAGES), prompt_hash(tuple(sent))]


@pytest.mark.parametrize("fix_attempts", [0, 2])
def test_fix_requests_stop_after_fix_attempts_and_report_the_last_error(openai_server, fix_attempts):
    answers = [bad_answer()] * (fix_attempts + 1)
    openai_server.push(*(ok(a) for a in answers), ok(good_answer()))  # one more is ready but never asked for
    result = propose(plan(), proposer(openai_server), fix_attempts=fix_attempts)
    assert result.status == "patch_failed" and result.code is None
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
    assert result.status == "parse_failed" and result.error == parsed.value.reason
    assert openai_server.chat_requests[1].body["messages"][-1] == build_fix_message(parsed.value.reason)


def test_transient_failures_are_retried_inside_one_call(openai_server):
    openai_server.push(server_error(500), rate_limited("0"), malformed(), ok(good_answer(), usage=(10, 5)))
    result = propose(plan(), proposer(openai_server, retries=3), fix_attempts=0)
    assert result.status == "applied"
    assert len(openai_server.chat_requests) == 4 and len(result.calls) == 1
    assert result.tokens == (10, 5)


def test_a_call_that_keeps_failing_is_a_result_not_an_exception(openai_server):
    openai_server.push(ok(bad_answer()))  # the first turn works, the fix turn meets a dead server
    openai_server.fallback = lambda _r: server_error(500, "upstream overloaded")
    result = propose(plan(), proposer(openai_server, retries=1), fix_attempts=1)
    assert result.status == "proposer_error" and result.code is None
    assert "HTTP 500: upstream overloaded" in result.error and "gave up after 2 attempts" in result.error
    assert len(result.calls) == 1  # the answer that was received is kept (journal, artifacts, tokens)


def test_the_money_limit_ends_the_attempt_as_budget_exhausted(openai_server):
    openai_server.push(ok(bad_answer(), usage=(1_000_000, 0)))  # $2 at $2/Mtok
    result = propose(plan(), proposer(openai_server, max_cost=1.0), fix_attempts=3)
    assert result.status == "budget_exhausted" and "max_cost" in result.error
    assert len(openai_server.chat_requests) == 1 and result.cost == pytest.approx(2.0)


def test_the_offline_proposer_goes_through_the_same_stage_reproducibly():
    first = propose(plan(seed=11), MutateProposer(), fix_attempts=1)
    again = propose(plan(seed=11), MutateProposer(), fix_attempts=1)
    assert first.status == "applied" and first.code != SEED
    assert first.code == again.code and first.response == again.response
    assert first.model == "mutate" and first.tokens == (0, 0) and first.cost == 0.0
    others = {propose(plan(seed=s), MutateProposer(), 1).code for s in range(12)}
    assert len(others) >= 3  # different seeds draw different moves


def test_a_known_program_is_sent_back_like_a_patch_error(openai_server):
    seen = {code_hash(GLOBAL.apply(SEED)): "same program as candidate 4 (global_policy)"}
    openai_server.push(ok(good_answer()), ok(good_answer()), ok(good_answer(MOVES["shrink_loads"])))
    result = propose(plan(), proposer(openai_server), fix_attempts=1, known=seen.get)
    assert result.status == "duplicate" and result.code is None
    assert result.error == "same program as candidate 4 (global_policy)"
    retry = openai_server.chat_requests[1].body["messages"]
    assert retry[-2]["content"] == good_answer() and "same program as candidate 4" in retry[-1]["content"]

    result = propose(plan(), proposer(openai_server), fix_attempts=1, known=seen.get)
    assert result.status == "applied" and result.code == MOVES["shrink_loads"].apply(SEED)

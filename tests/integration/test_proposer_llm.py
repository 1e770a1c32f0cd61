"""The LLM proposer through the real openai client against a real local HTTP server."""
from __future__ import annotations

import socket
import time

import pytest
from openai_server import (
    FakeOpenAIServer,
    context_too_long,
    empty_choices,
    empty_content,
    malformed,
    ok,
    rate_limited,
    reset,
    server_error,
    slow,
    status,
)

from evaluator.errors import UserError
from harness.proposers.base import BudgetExhausted, EndpointError, ProposalRequest, ProposerError, prompt_hash
from harness.proposers.llm import LLMOptions, LLMProposer
from harness.proposers.prompts import build_fix_message

KEY = "sk-test-secret-123"
MESSAGES = ({"role": "system", "content": "be good"}, {"role": "user", "content": "improve this"})


def request(messages=MESSAGES, seed: int = 0) -> ProposalRequest:
    return ProposalRequest(messages=tuple(messages), prompt_hash=prompt_hash(messages), parent_code="",
                           crossover=None, seed=seed)


def make(server: FakeOpenAIServer, sleeps: list[float] | None = None, **overrides) -> LLMProposer:
    options = dict(models=(("test-model", 1.0),), api_base=server.url, timeout_s=0.5, retries=2,
                   backoff_base_s=0.01, backoff_max_s=0.5, prices={"test-model": (2.0, 10.0)})
    options.update(overrides)
    record = sleeps if sleeps is not None else []
    return LLMProposer(LLMOptions(**options), environ={"OPENAI_API_KEY": KEY}, sleep=record.append)


def closed_port_url() -> str:
    """A base URL nobody listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_success_reports_text_usage_cost_and_sends_the_conversation(openai_server):
    openai_server.push(ok("<NAME>x</NAME>", usage=(1000, 200)))
    proposer = make(openai_server, temperature=0.7, max_output_tokens=512)
    proposal = proposer.propose(request())
    assert (proposal.text, proposal.model, proposal.finish_reason) == ("<NAME>x</NAME>", "test-model", "stop")
    assert (proposal.prompt_tokens, proposal.completion_tokens, proposal.tokens_estimated) == (1000, 200, False)
    assert proposal.cost == pytest.approx((1000 * 2.0 + 200 * 10.0) / 1e6)
    assert proposer.spent == pytest.approx(proposal.cost)
    [sent] = openai_server.chat_requests
    assert sent.body["messages"] == list(MESSAGES)
    assert (sent.body["model"], sent.body["temperature"], sent.body["max_tokens"]) == ("test-model", 0.7, 512)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(sent.body)


def test_missing_usage_is_estimated_and_flagged(openai_server):
    openai_server.push(ok("x" * 350, usage=None))
    proposal = make(openai_server).propose(request())
    assert proposal.tokens_estimated
    assert proposal.completion_tokens == 100
    assert proposal.prompt_tokens > 0 and proposal.cost > 0


def test_rate_limit_honours_retry_after(openai_server):
    sleeps: list[float] = []
    openai_server.push(rate_limited(retry_after="0.3"), ok("done"))
    assert make(openai_server, sleeps).propose(request()).text == "done"
    assert sleeps == [pytest.approx(0.3)]
    assert len(openai_server.chat_requests) == 2


def test_retry_after_beyond_the_cap_fails_without_waiting(openai_server):
    sleeps: list[float] = []
    openai_server.push(rate_limited(retry_after="3600"))
    with pytest.raises(EndpointError, match="HTTP 429: Rate limit reached for requests and asks to wait 3600 s"):
        make(openai_server, sleeps).propose(request())
    assert sleeps == []


def test_server_errors_back_off_exponentially_with_jitter(openai_server):
    sleeps: list[float] = []
    openai_server.push(server_error(500), server_error(503), ok("finally"))
    assert make(openai_server, sleeps).propose(request()).text == "finally"
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02


def test_persistent_failure_gives_up_after_the_retries_blaming_the_endpoint(openai_server):
    openai_server.push(*[server_error(502, "bad gateway")] * 3)
    with pytest.raises(EndpointError) as info:
        make(openai_server).propose(request())
    assert str(info.value) == (f"endpoint failure at {openai_server.url} (test-model): HTTP 502: bad gateway "
                               "(gave up after 3 attempts); check that the server is up and not overloaded")
    assert len(openai_server.chat_requests) == 3


def test_a_refused_connection_is_the_endpoints_failure():
    sleeps: list[float] = []
    proposer = LLMProposer(LLMOptions(models=(("m", 1.0),), api_base=closed_port_url(), timeout_s=0.5, retries=1,
                                      backoff_base_s=0.01), environ={"OPENAI_API_KEY": KEY}, sleep=sleeps.append)
    with pytest.raises(EndpointError, match=r"\(m\): connection refused \(gave up after 2 attempts\)"):
        proposer.propose(request())
    assert len(sleeps) == 1


def test_a_reset_connection_is_retried_and_in_the_end_the_endpoints_failure(openai_server):
    openai_server.push(reset(), ok("after the reset"))
    assert make(openai_server).propose(request()).text == "after the reset"
    openai_server.push(reset(), reset())
    with pytest.raises(EndpointError, match=r"Connection reset by peer \(gave up after 2 attempts\)"):
        make(openai_server, retries=1).propose(request())


def test_a_stalled_endpoint_is_cut_off_by_the_deadline_and_retried(openai_server):
    openai_server.push(slow(5.0), ok("fast now"))
    started = time.monotonic()
    assert make(openai_server).propose(request()).text == "fast now"
    assert time.monotonic() - started < 3.0  # not the 5 s the server stalls
    assert len(openai_server.chat_requests) == 2


def test_a_stalled_endpoint_ends_in_a_timeout_error(openai_server):
    openai_server.push(slow(5.0), slow(5.0))
    with pytest.raises(EndpointError, match=r"no answer within 0.5 s \(gave up after 2 attempts\)"):
        make(openai_server, retries=1).propose(request())


def test_context_too_long_is_not_retried_and_carries_the_server_message(openai_server):
    openai_server.push(context_too_long("maximum context length is 8192 tokens"))
    with pytest.raises(ProposerError, match="HTTP 400: maximum context length is 8192 tokens") as info:
        make(openai_server).propose(request())
    assert not isinstance(info.value, EndpointError)
    assert len(openai_server.chat_requests) == 1


@pytest.mark.parametrize("bad, reason, endpoint", [
    (malformed(), "malformed body: not valid JSON", True),
    (empty_choices(), "malformed body: a chat completion with no choices", True),
    (empty_content(), "the answer is empty", False),
])
def test_malformed_answers_are_retried_then_reported_as_the_endpoints_or_the_answers(openai_server, bad, reason,
                                                                                       endpoint):
    openai_server.push(bad, bad, bad)
    with pytest.raises(ProposerError, match=reason) as info:
        make(openai_server).propose(request())
    assert isinstance(info.value, EndpointError) == endpoint
    assert len(openai_server.chat_requests) == 3


def test_an_answer_cut_off_at_max_tokens_is_returned_with_its_finish_reason(openai_server):
    openai_server.push(ok("<NAME>long</NAME>\n<DIFF>\n<<<<<<< SEARCH\n    x = 1\n", finish_reason="length"))
    proposal = make(openai_server, max_output_tokens=64).propose(request())
    assert (proposal.finish_reason, proposal.text.endswith("x = 1\n")) == ("length", True)


def test_an_answer_cut_off_before_it_began_fails_at_once_naming_the_limit(openai_server):
    openai_server.push(ok(None, reasoning="Let me think about packing... " * 40, finish_reason="length"))
    with pytest.raises(ProposerError) as info:
        make(openai_server, max_output_tokens=256).propose(request())
    assert not isinstance(info.value, EndpointError)
    assert str(info.value) == ("test-model: the answer is empty: the output limit of 256 tokens was reached before "
                               "any answer (finish_reason length), most likely spent on reasoning; raise "
                               "max_output_tokens")
    assert len(openai_server.chat_requests) == 1  # a retry would be cut off the same way


def test_a_malformed_answer_followed_by_a_good_one_succeeds(openai_server):
    openai_server.push(malformed(), ok("good"))
    assert make(openai_server).propose(request()).text == "good"


def test_budget_stops_further_calls(openai_server):
    openai_server.push(ok("a", usage=(100_000, 0)), ok("b", usage=(100_000, 0)), ok("c"))
    proposer = make(openai_server, prices={"test-model": (3.0, 0.0)}, max_cost=0.5)
    proposer.propose(request())  # $0.30
    proposer.propose(request())  # $0.60: over the limit only after this call
    with pytest.raises(BudgetExhausted, match="max_cost"):
        proposer.propose(request())
    assert len(openai_server.chat_requests) == 2
    assert not issubclass(BudgetExhausted, ProposerError)


def test_max_cost_without_prices_is_a_user_error(openai_server):
    with pytest.raises(UserError, match="price for every model; none for test-model"):
        make(openai_server, prices={}, max_cost=1.0)


def test_missing_key_names_the_variable(openai_server):
    options = LLMOptions(models=(("m", 1.0),), api_base=openai_server.url, api_key_env="MY_LLM_KEY")
    with pytest.raises(UserError, match="MY_LLM_KEY is not set"):
        LLMProposer(options, environ={"OPENAI_API_KEY": KEY})


def test_keyless_endpoint_never_sends_a_key_from_the_environment(openai_server):
    openai_server.push(ok("fine"))
    proposer = LLMProposer(LLMOptions(models=(("test-model", 1.0),), api_base=openai_server.url,
                                      api_key_env="none", timeout_s=0.5), environ={"OPENAI_API_KEY": KEY})
    proposer.propose(request())
    assert KEY not in openai_server.chat_requests[0].headers.get("authorization", "")


def test_rejected_key_is_a_user_error_that_does_not_print_the_key(openai_server):
    openai_server.push(status(401, "Incorrect API key provided"))
    with pytest.raises(UserError, match="rejected the API key from OPENAI_API_KEY") as info:
        make(openai_server).propose(request())
    assert KEY not in str(info.value)


def test_check_reports_an_unreachable_endpoint_in_one_line():
    base = closed_port_url()
    proposer = LLMProposer(LLMOptions(models=(("m", 1.0),), api_base=base, timeout_s=0.5),
                           environ={"OPENAI_API_KEY": KEY})
    with pytest.raises(UserError) as info:
        proposer.check()
    assert str(info.value) == f"cannot reach the model endpoint {base}: connection refused; check --api-base"


def test_check_catches_a_misspelt_model(openai_server):
    openai_server.models = ["qwen3-coder", "llama-3"]
    with pytest.raises(UserError, match="'qwen3-codr' is not served .* lists: llama-3, qwen3-coder"):
        make(openai_server, models=(("qwen3-codr", 1.0),), prices={}).check()


def test_check_passes_and_falls_back_to_a_probe_without_a_model_listing(openai_server):
    make(openai_server).check()
    assert [(r.method, r.path) for r in openai_server.requests] == [("GET", "/v1/models")]  # one probe, no chat
    openai_server.models_status = 404
    openai_server.push(ok("OK", usage=(5, 1)))
    make(openai_server).check()
    [probe] = openai_server.chat_requests
    assert probe.body["max_tokens"] == 1


def test_check_rejects_a_bad_key(openai_server):
    openai_server.models_status = 401
    with pytest.raises(UserError, match="rejected the API key"):
        make(openai_server).check()


def test_model_choice_is_weighted_and_reproducible_from_the_seed(openai_server):
    proposer = make(openai_server, models=(("big", 1.0), ("small", 3.0)), prices={})
    picks = [proposer.pick_model(seed) for seed in range(400)]
    assert picks == [proposer.pick_model(seed) for seed in range(400)]
    assert 0.65 < picks.count("small") / len(picks) < 0.85
    openai_server.push(ok("x"))
    proposer.propose(request(seed=7))
    assert openai_server.chat_requests[0].body["model"] == proposer.pick_model(7)


def test_fix_conversation_is_sent_verbatim(openai_server):
    conversation = (*MESSAGES, {"role": "assistant", "content": "<DIFF>bad</DIFF>"},
                    build_fix_message("SEARCH block 1 not found; nearest miss at line 40"))
    openai_server.push(ok("fixed"))
    make(openai_server).propose(request(conversation))
    assert openai_server.chat_requests[0].body["messages"] == list(conversation)

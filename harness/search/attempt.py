"""One attempt's proposal stage: ask the proposer, parse, apply; on a bad answer, ask again.

Runs on a worker thread and writes no shared state itself: it returns the `Attempt` with its calls
and outcome filled in, for the controller (the single writer) to record. The one exception is by
design: each call is handed to `on_call` the moment it returns, before its answer is parsed, so
the controller journals it, with its tokens and cost, before anything can cut the attempt short.

A patch that fails is sent back to the model in the same conversation with the engine's exact
error, up to `fix_attempts` times, instead of being skipped silently (the peers' users' first
complaint). So is a change that only rebuilds a program already evaluated (`known` says which):
every island starts from the seed, so the same first move is proposed again and again. An answer
cut off at the output limit (finish_reason "length") is told so, and asked to be shorter: its
parse or patch error is only a symptom of the cut.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from harness.diff.patch import apply_edits
from harness.diff.response import ResponseError, parse_response
from harness.proposers.base import (
    BudgetExhausted,
    EndpointError,
    Proposal,
    ProposalRequest,
    Proposer,
    ProposerError,
    prompt_hash,
)
from harness.proposers.prompts import build_cut_off_message, build_duplicate_message, build_fix_message
from harness.search.attempt_record import Attempt, Call
from harness.store.candidate import code_hash
from harness.store.status import Status

CUT_OFF = "length"  # the finish_reason of an answer that stopped at the output limit


def _unknown(_digest: str) -> str | None:
    return None


def _keep(_attempt: Attempt, call: Call) -> Call:
    return call


def propose(attempt: Attempt, proposer: Proposer, fix_attempts: int, *, max_output_tokens: int | None = None,
            known: Callable[[str], str | None] = _unknown,
            on_call: Callable[[Attempt, Call], Call] = _keep) -> Attempt:
    """Ask, parse and apply, retrying with the exact error; never raises for a bad answer or a failed call.

    `known(code_hash)` names the program already evaluated that a new program repeats, or is None.
    `on_call(attempt, call)` files each call as it returns and gives it back as filed.
    `max_output_tokens` is quoted to an answer that was cut off at it.
    """
    plan = attempt.plan
    messages = plan.messages
    for turn in range(fix_attempts + 1):
        request = ProposalRequest(messages=messages, prompt_hash=prompt_hash(messages), parent_code=plan.parent_code,
                                  crossover=plan.crossover, seed=plan.seed * 100 + turn)
        try:
            proposal = proposer.propose(request)
        except BudgetExhausted as exhausted:
            return attempt.cut_short(Status.BUDGET_EXHAUSTED, str(exhausted))
        except EndpointError as failed:
            return attempt.cut_short(Status.ENDPOINT_ERROR, str(failed))
        except ProposerError as failed:
            return attempt.cut_short(Status.PROPOSER_ERROR, str(failed))
        except Exception as error:  # a proposer bug, or a setting found wrong mid-run: journaled, the run goes on
            return attempt.cut_short(Status.PROPOSER_ERROR, f"{type(error).__name__}: {error}")
        call = on_call(attempt, Call(len(attempt.calls) + 1, messages, request.prompt_hash, proposal))
        attempt = _judge(replace(attempt, calls=(*attempt.calls, call)), proposal, known)
        if attempt.status is Status.APPLIED:
            return attempt
        messages = (*messages, {"role": "assistant", "content": proposal.text},
                    _follow_up(attempt, proposal, max_output_tokens))
    return attempt


def _judge(attempt: Attempt, proposal: Proposal, known: Callable[[str], str | None]) -> Attempt:
    """The attempt with this answer's verdict: APPLIED with the new program, or why not.

    An answer cut off at the output limit is never applied, even when what arrived parses: a
    reasoning model whose opening <think> came from the chat template leaves no marker, so a reply
    cut off mid-thought can hold a draft edit the model would have rejected."""
    if proposal.finish_reason == CUT_OFF:
        return replace(attempt, status=Status.PARSE_FAILED, response=None, blocks=(),
                       error="the answer was cut off at the output limit (finish_reason 'length'); an incomplete "
                             "answer is never applied")
    try:
        response = parse_response(proposal.text)
    except ResponseError as bad:
        return replace(attempt, status=Status.PARSE_FAILED, error=bad.reason, response=None, blocks=())
    patch = apply_edits(attempt.plan.parent_code, response)
    blocks = tuple(patch.to_dict()["outcomes"])
    if not patch.ok or patch.text is None:
        return replace(attempt, status=Status.PATCH_FAILED, error=patch.summary(), response=response, blocks=blocks)
    digest = code_hash(patch.text)
    twin = known(digest)
    if twin is not None:
        return replace(attempt, status=Status.DUPLICATE, error=twin, response=response, blocks=blocks)
    return replace(attempt, status=Status.APPLIED, error=None, response=response, blocks=blocks, code=patch.text,
                   code_hash=digest)


def _follow_up(attempt: Attempt, proposal: Proposal, max_output_tokens: int | None) -> dict[str, str]:
    """The next turn after a bad answer: the duplicate it made, its cut-off, or its exact error."""
    if attempt.status is Status.DUPLICATE:
        return build_duplicate_message(attempt.error or "")
    if proposal.finish_reason == CUT_OFF:
        return build_cut_off_message(max_output_tokens)
    return build_fix_message(attempt.error or "")

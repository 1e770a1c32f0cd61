"""A proposer backed by any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama...).

Our own deadline and retry policy, not the client's (`max_retries=0`): every call has a hard
per-request timeout, transient failures (429, 408/409, 5xx, timeouts, connection errors,
malformed answers) are retried with exponential backoff and jitter, honouring Retry-After,
and anything that retrying cannot fix fails at once. That is what keeps one stalled endpoint
from blocking a run for hours. Tokens and dollars are counted per call and against `max_cost`.

Whose failure it was decides the exception: the endpoint's (network, timeouts, 429/5xx, a body that
is not a chat completion) ends in `EndpointError`, the answer's (empty, or a request the server
refused, such as a prompt over the context) in a plain `ProposerError`, so that the controller
never shows the model an outage as if its answer were wrong. Every proposal carries the
endpoint's `finish_reason`, "length" meaning the answer was cut off at `max_output_tokens`.
"""
from __future__ import annotations

import email.utils
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from evaluator.errors import UserError
from harness.proposers.base import BudgetExhausted, EndpointError, Proposal, ProposalRequest, ProposerError
from harness.proposers.prompts import CHARS_PER_TOKEN, estimate_tokens

NO_KEY = "none"  # api_key_env value for local endpoints that need no key
_PLACEHOLDER_KEY = "no-key"  # what we send then: never a key read from the environment
_RETRYABLE_STATUS = frozenset({408, 409, 429})
LISTING_TIMEOUT_S = 30.0  # GET /models answers at once when the endpoint is up; a cold model may not


@dataclass(frozen=True)
class LLMOptions:
    """How to reach the models and what a proposal may cost.

    models: (name, weight) pairs; each request picks one by a weighted draw seeded by the request.
    prices: {model: (dollars per million prompt tokens, dollars per million completion tokens)}.
    timeout_s: the deadline of one HTTP call. retries: extra attempts after the first.
    Backoff before retry k (0-based) is min(backoff_max_s, backoff_base_s * 2**k), times a
    jitter factor in [0.5, 1]; a Retry-After header replaces it when it is longer.
    """

    models: tuple[tuple[str, float], ...]
    api_base: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 300.0
    retries: int = 4
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    max_cost: float | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None


class _Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's requested wait, if it gave one.
    `endpoint` is False when the endpoint worked and the answer was the trouble (an empty one)."""

    def __init__(self, reason: str, retry_after: float | None = None, endpoint: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.endpoint = endpoint


def read_api_key(env_name: str, environ: Mapping[str, str]) -> str | None:
    """The key from the named variable; None for `"none"` (local endpoints). Missing -> UserError."""
    if env_name.strip().lower() == NO_KEY:
        return None
    key = environ.get(env_name, "").strip()
    if not key:
        raise UserError(f"no API key: the environment variable {env_name} is not set; set it, or set "
                        f"api_key_env = \"none\" for a local endpoint that needs no key")
    return key


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return exc.message


def _connection_reason(exc: openai.APIConnectionError, timeout_s: float) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return f"no answer within {timeout_s:g} s"
    cause = str(exc.__cause__ or exc)
    if "refused" in cause.lower():
        return "connection refused"
    return cause.split("] ", 1)[-1] if cause.startswith("[Errno") else cause


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: retry-after-ms, or Retry-After as seconds or an HTTP date."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff


class LLMProposer:
    """Proposals from chat models; thread-safe, so the controller may call it concurrently."""

    name = "llm"

    def __init__(self, options: LLMOptions, *, environ: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not options.models or any(w <= 0 for _, w in options.models):
            raise UserError("models: give at least one model, each with a weight > 0")
        if options.timeout_s <= 0 or options.retries < 0:
            raise UserError(f"timeout_s must be > 0 and retries >= 0 (got {options.timeout_s:g} and {options.retries})")
        unpriced = [m for m, _ in options.models if m not in options.prices]
        if options.max_cost is not None and unpriced:
            raise UserError(f"max_cost needs a price for every model; none for {', '.join(unpriced)} "
                            f"(add prices = {{\"{unpriced[0]}\" = [prompt_per_mtok, completion_per_mtok]}})")
        key = read_api_key(options.api_key_env, os.environ if environ is None else environ)
        self.options = options
        self._sleep = sleep
        self._client = openai.OpenAI(api_key=key or _PLACEHOLDER_KEY, base_url=options.api_base,
                                     timeout=options.timeout_s, max_retries=0)
        self._lock = threading.Lock()
        self._spent = 0.0

    @property
    def spent(self) -> float:
        """Dollars spent by this proposer so far (by its prices)."""
        with self._lock:
            return self._spent

    def check(self) -> None:
        """Probe the endpoint once at start-up so a wrong address, key or model name fails now.

        Lists the models (GET /models) and checks ours are among them; endpoints without a
        listing get a 1-token chat call per model instead. Raises UserError with a fix.
        """
        base = self.options.api_base
        listing_timeout = min(self.options.timeout_s, LISTING_TIMEOUT_S)
        try:
            served = {m.id for m in self._client.with_options(timeout=listing_timeout).models.list()}
        except openai.APIConnectionError as exc:
            raise self._unreachable(exc, listing_timeout) from None
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):
                for model, _ in self.options.models:
                    self._probe(model)
                return
            raise self._config_error(exc, "GET /models") from None
        missing = [m for m, _ in self.options.models if m not in served]
        if served and missing:
            listed = ", ".join(sorted(served)[:10]) + (" ..." if len(served) > 10 else "")
            raise UserError(f"model {missing[0]!r} is not served by {base} (it lists: {listed}); "
                            f"check the model names")

    def _probe(self, model: str) -> None:
        try:
            self._client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Reply with OK."}], max_tokens=1)
        except openai.APIConnectionError as exc:
            raise self._unreachable(exc, self.options.timeout_s) from None
        except openai.APIStatusError as exc:
            if exc.status_code not in _RETRYABLE_STATUS and exc.status_code < 500:
                raise self._config_error(exc, f"a test call to {model!r}") from None

    def _unreachable(self, exc: openai.APIConnectionError, timeout_s: float) -> UserError:
        return UserError(f"cannot reach the model endpoint {self.options.api_base}: "
                         f"{_connection_reason(exc, timeout_s)}; check --api-base")

    def _config_error(self, exc: openai.APIStatusError, what: str) -> UserError:
        base, status = self.options.api_base, exc.status_code
        if status in (401, 403):
            return UserError(f"the model endpoint {base} rejected the API key from "
                             f"{self.options.api_key_env} (HTTP {status}: {_server_message(exc)}); check the key")
        return UserError(f"the model endpoint {base} answered {what} with HTTP {status}: "
                         f"{_server_message(exc)}; check --api-base and the model names")

    def pick_model(self, seed: int) -> str:
        """The model for a request: a weighted draw from a generator seeded by the request alone."""
        names = [m for m, _ in self.options.models]
        return random.Random(seed).choices(names, weights=[w for _, w in self.options.models])[0]

    def propose(self, request: ProposalRequest) -> Proposal:
        with self._lock:
            if self.options.max_cost is not None and self._spent >= self.options.max_cost:
                raise BudgetExhausted(f"spent ${self._spent:.4f} of max_cost ${self.options.max_cost:.4f}")
        model = self.pick_model(request.seed)
        jitter = random.Random(request.seed)  # deterministic per request, different across requests
        started = time.monotonic()
        attempts = self.options.retries + 1
        for attempt in range(attempts):
            try:
                text, usage, finish_reason = self._complete(model, request.messages)
                break
            except _Transient as exc:
                if attempt == attempts - 1:
                    raise self._gave_up(model, exc, f"(gave up after {attempts} attempts)") from None
                delay = self._delay(attempt, exc.retry_after, jitter)
                if delay is None:
                    raise self._gave_up(model, exc, f"and asks to wait {exc.retry_after:g} s, more than "
                                                    f"backoff_max_s={self.options.backoff_max_s:g}") from None
                self._sleep(delay)
        return self._account(model, request.messages, text, usage, finish_reason, time.monotonic() - started)

    def _gave_up(self, model: str, failure: _Transient, why: str) -> ProposerError:
        """The final error of a call: EndpointError when the endpoint failed, else the answer's ProposerError."""
        if failure.endpoint:
            return EndpointError(f"endpoint failure at {self.options.api_base} ({model}): {failure.reason} {why}; "
                                 "check that the server is up and not overloaded")
        return ProposerError(f"{model}: {failure.reason} {why}")

    def _delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Backoff with jitter, or the server's Retry-After when longer; None if that exceeds our cap."""
        opts = self.options
        backoff = min(opts.backoff_max_s, opts.backoff_base_s * 2 ** attempt) * rng.uniform(0.5, 1.0)
        if retry_after is None:
            return backoff
        return max(backoff, retry_after) if retry_after <= opts.backoff_max_s else None

    def _complete(self, model: str, messages: Sequence[dict[str, str]]) -> tuple[str, Any, str | None]:
        """One HTTP call: (text, usage or None, finish_reason), or _Transient / ProposerError / UserError."""
        extra: dict[str, Any] = {}
        if self.options.temperature is not None:
            extra["temperature"] = self.options.temperature
        if self.options.max_output_tokens is not None:
            extra["max_tokens"] = self.options.max_output_tokens
        try:
            response = self._client.chat.completions.create(model=model, messages=list(messages), **extra)
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise _Transient(_connection_reason(exc, self.options.timeout_s)) from None
        except openai.APIStatusError as exc:
            status, message = exc.status_code, _server_message(exc)
            if status in _RETRYABLE_STATUS or status >= 500:
                raise _Transient(f"HTTP {status}: {message}", _retry_after(exc.response.headers)) from None
            if status in (401, 403):
                raise self._config_error(exc, "a chat call") from None
            if status == 404:
                raise UserError(f"model {model!r} not found at {self.options.api_base} "
                                f"(HTTP 404: {message}); check the model names") from None
            raise ProposerError(f"{model}: HTTP {status}: {message}") from None
        except (ValueError, openai.APIResponseValidationError):
            raise _Transient("malformed body: not valid JSON") from None
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            raise _Transient("malformed body: not a chat completion")
        if not choices:
            raise _Transient("malformed body: a chat completion with no choices")
        choice = choices[0]
        text = choice.message.content if choice.message is not None else None
        if not text or not text.strip():
            if choice.finish_reason == "length":  # the same limit would cut the same way: no retry
                limit = self.options.max_output_tokens
                of_limit = f" of {limit} tokens" if limit else ""
                raise ProposerError(f"{model}: the answer is empty: the output limit{of_limit} was reached before "
                                    "any answer (finish_reason length), most likely spent on reasoning; raise "
                                    "max_output_tokens")
            raise _Transient(f"the answer is empty (finish_reason={choice.finish_reason})", endpoint=False)
        return text, response.usage, choice.finish_reason

    def _account(self, model: str, messages: Sequence[dict[str, str]], text: str, usage: Any,
                 finish_reason: str | None, latency_s: float) -> Proposal:
        """Tokens from `usage` (estimated when the endpoint sent none), cost from prices, running total."""
        if usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
            prompt_tokens, completion_tokens, estimated = usage.prompt_tokens, usage.completion_tokens, False
        else:
            prompt_tokens = estimate_tokens(messages)
            completion_tokens, estimated = math.ceil(len(text) / CHARS_PER_TOKEN), True
        prompt_price, completion_price = self.options.prices.get(model, (0.0, 0.0))
        cost = (prompt_tokens * prompt_price + completion_tokens * completion_price) / 1e6
        with self._lock:
            self._spent += cost
        return Proposal(text=text, model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        cost=cost, latency_s=latency_s, tokens_estimated=estimated, finish_reason=finish_reason)

"""A proposer backed by any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama...).

Our own deadline and retry policy, not the client's (`max_retries=0`): every call has a hard
per-request timeout, transient failures (429, 408/409, 5xx, timeouts, connection errors,
malformed answers) are retried with exponential backoff and jitter, honouring Retry-After,
and anything that retrying cannot fix fails at once. That is what keeps one stalled endpoint
from blocking a run for hours. Tokens and dollars are counted per call and against `max_cost`.
"""
from __future__ import annotations

import email.utils
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import openai

from evaluator.errors import UserError
from harness.proposers.prompts import CHARS_PER_TOKEN, estimate_tokens
from harness.proposers.base import BudgetExhausted, Proposal, ProposalRequest, ProposerError

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
    """A failure worth retrying; `retry_after` is the server's requested wait, if it gave one."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


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
                text, usage = self._complete(model, request.messages)
                break
            except _Transient as exc:
                if attempt == attempts - 1:
                    raise ProposerError(f"{model}: {exc.reason} (gave up after {attempts} attempts)") from None
                delay = self._delay(attempt, exc.retry_after, jitter)
                if delay is None:
                    raise ProposerError(f"{model}: {exc.reason}; the server asks to wait {exc.retry_after:g} s, "
                                        f"more than backoff_max_s={self.options.backoff_max_s:g}") from None
                self._sleep(delay)
        return self._account(model, request.messages, text, usage, time.monotonic() - started)

    def _delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Backoff with jitter, or the server's Retry-After when longer; None if that exceeds our cap."""
        opts = self.options
        backoff = min(opts.backoff_max_s, opts.backoff_base_s * 2 ** attempt) * rng.uniform(0.5, 1.0)
        if retry_after is None:
            return backoff
        return max(backoff, retry_after) if retry_after <= opts.backoff_max_s else None

    def _complete(self, model: str, messages: Sequence[dict[str, str]]) -> tuple[str, Any]:
        """One HTTP call: (text, usage or None), or _Transient / ProposerError / UserError."""
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
            raise _Transient("malformed answer: the body is not valid JSON") from None
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            raise _Transient("malformed answer: not a chat completion")
        if not choices:
            raise _Transient("the answer has no choices")
        text = choices[0].message.content if choices[0].message is not None else None
        if not text or not text.strip():
            raise _Transient(f"the answer is empty (finish_reason={choices[0].finish_reason})")
        return text, response.usage

    def _account(self, model: str, messages: Sequence[dict[str, str]], text: str, usage: Any,
                 latency_s: float) -> Proposal:
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
                        cost=cost, latency_s=latency_s, tokens_estimated=estimated)

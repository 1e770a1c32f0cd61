"""Reasoning in a reply is not its answer: blank it before the reply is read (pure).

Models served without a reasoning parser (Qwen3 on vLLM, the DeepSeek-R1 distills, gpt-oss behind
a plain chat template, ...) send their thinking inside the content. That thinking often holds a
draft SEARCH/REPLACE block the model then rejects; read as part of the answer, a draft for another
place is applied along with the real edit (a silently wrong program), and a draft for the same
lines makes the real block fail. So, whichever marker family a model uses:

* everything up to the LAST closing marker is reasoning. Only the closing marker counts, because
  the opening one is often in the chat template rather than the reply (DeepSeek-R1, Qwen3
  thinking models: the reply starts inside the thought and holds only `</think>`);
* an opening marker at the start of a line with no closing marker after it starts reasoning that
  runs to the end: the reply stopped (usually at max_tokens) while the model was thinking.

A reply with nothing left is a `ResponseError` ("the answer holds only reasoning text: ...").
Blanked text keeps its line breaks, so line numbers in later errors and in `EditBlock.line` still
count from the start of the reply as saved.

The markers, each from the documentation of the models or servers that emit them:

* `<think>` / `</think>`: DeepSeek-R1 and its distills, QwQ, Qwen3, GLM-4.5, MiniMax-M2, Hunyuan-A13B
  (vLLM "Reasoning Outputs": parsers deepseek_r1, qwen3, glm45, minimax_m2, hunyuan_a13b);
* `<seed:think>` / `</seed:think>`: ByteDance Seed-OSS (vLLM seedoss_reasoning_parser);
* `[THINK]` / `[/THINK]`: Mistral Magistral 1.1 and later (the Magistral-Small-2507 model card);
* `◁think▷` / `◁/think▷`: Moonshot Kimi (SGLang "Reasoning Parser", kimi);
* `<|channel>` / `<channel|>`: Gemma 4 thinking mode (Google's "Gemma 4 prompt formatting"; vLLM
  gemma4_reasoning_parser);
* `<|channel|>analysis<|message|>` ... `<|channel|>final<|message|>`: gpt-oss, OpenAI's harmony format
  (OpenAI cookbook "OpenAI Harmony Response Format"); a few tokens may stand between `final` and
  `<|message|>` (vLLM gptoss_reasoning_parser), and the answer ends with `<|return|>` or `<|end|>`;
* `<thinking>`, `<thought>`, `<reason>`, `<reasoning>` (any letter case) and `<|begin_of_thought|>` /
  `<|end_of_thought|>`: Open WebUI's default reasoning tags (backend/open_webui/utils/middleware.py,
  DEFAULT_REASONING_TAGS); `<thinking>` is also Anthropic's advice for Claude's visible chain of
  thought ("Let Claude think").

Not handled: IBM Granite 3.2's plain-English markers ("Here is my thought process:" / "Here is my
response:"), which ordinary prose can contain; serve Granite with a reasoning parser instead.
"""
from __future__ import annotations

import re

from harness.diff.errors import ResponseError

_PAIRS = (  # (opening, closing) as regular expressions, in the order of the docstring
    (r"<think>", r"</think>"),
    (r"<seed:think>", r"</seed:think>"),
    (r"\[THINK\]", r"\[/THINK\]"),
    (r"◁think▷", r"◁/think▷"),
    (r"<\|channel>", r"<channel\|>"),
    (r"(?:<\|start\|>assistant)?<\|channel\|>analysis<\|message\|>", r"<\|channel\|>final[^\n]{0,80}?<\|message\|>"),
    (r"<(?:thinking|thought|reason|reasoning)>", r"</(?:thinking|thought|reason|reasoning)>"),
    (r"<\|begin_of_thought\|>", r"<\|end_of_thought\|>"),
)
_CLOSING = re.compile("|".join(closing for _, closing in _PAIRS), re.IGNORECASE)
_OPENING = re.compile(r"^[ \t]*(?:" + "|".join(opening for opening, _ in _PAIRS) + ")", re.IGNORECASE | re.MULTILINE)
_HARMONY_END = re.compile(r"(?:<\|(?:return|end)\|>\s*)+\Z")


def blank_reasoning(text: str) -> str:
    """`text` with its reasoning replaced by the line breaks it held; ResponseError if nothing else is left."""
    closings = list(_CLOSING.finditer(text))
    start = closings[-1].end() if closings else 0
    opening = _OPENING.search(text, start)
    answer = _HARMONY_END.sub("", text[start:opening.start() if opening else len(text)])
    if opening is not None and not answer.strip():
        raise ResponseError(f"the answer holds only reasoning text: the reasoning opened by "
                            f"'{opening.group().strip()}' at line {_line(text, opening)} never ends (the reply "
                            "stopped while the model was thinking); think more briefly, or raise max_output_tokens, "
                            "or serve the model with a reasoning parser (vLLM: --reasoning-parser)")
    if closings and not answer.strip():
        raise ResponseError(f"the answer holds only reasoning text: nothing follows the '{closings[-1].group()}' at "
                            f"line {_line(text, closings[-1])}; put the answer (NAME, DESCRIPTION, DIFF) after the "
                            "reasoning, not inside it")
    return "\n" * text.count("\n", 0, start) + answer


def _line(text: str, match: re.Match[str]) -> int:
    return text.count("\n", 0, match.start()) + 1

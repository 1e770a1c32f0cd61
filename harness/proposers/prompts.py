"""Chat prompts for the model: parent, inspirations and recent failures -> messages (pure).

What goes in a prompt is decided here and nowhere else, so the prompt a model saw can always
be rebuilt from a `PromptContext`. Failures are shown with the exact error the patch engine or
the evaluator reported and the edit that caused it, because a model cannot learn from
"replaced 15 lines with 18" (a complaint about the peers).

`fit_to_context` makes context overflow a start-up error with a clear message instead of a
mid-run crash on a 400 from the endpoint.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evaluator.errors import UserError

TASK_STATEMENT = """\
You are improving an expert-parallel load balancer (EPLB) for Mixture-of-Experts inference.

The problem. A MoE model has L layers with E logical experts each. Inference spreads experts over
G GPUs in N nodes; every GPU has R/G physical expert slots, R >= E, so R - E slots hold extra
replicas of hot experts. Every rebalance period the serving engine calls
    rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus,
                      old_global_expert_indices=None)
        -> (phy2log, log2phy, logcnt)
with weight [L, E] = tokens routed to each expert over the last window. It returns
phy2log [L, R] int64 (the logical expert held by each slot; GPU g owns slots
[g*R/G, (g+1)*R/G), node n owns GPUs [n*G/N, (n+1)*G/N)), log2phy [L, E, K] int64 (for each
expert the slots holding it, padded with -1) and logcnt [L, E] int64 (replica count of each
expert). An expert's tokens are split evenly over its replicas. `old_global_expert_indices`
(vLLM's name) is the phy2log in force, from your previous call (None on the first call); a program
whose signature has no such parameter is called with the five arguments.

A valid answer: ids in range; every expert has at least one replica; logcnt equals the count of
each expert in phy2log and sums to R in every layer; the first logcnt[l, e] entries of
log2phy[l, e] are exactly the slots holding e and the rest are -1. The same expert may sit twice
on one GPU. Outputs are checked; an invalid answer scores zero.

{score}
Each evaluation also scores your program on fresh windows of the same workloads: one that does
much better on the graded windows than on fresh ones is invalid.

State. The program is called on consecutive windows of one deployment, in one process: it may
keep state between calls, keyed by the call's shape and arguments (for example its previous
placement, or a forecast of the loads from past windows), and must work without it on the first
call. It must not modify its input.

The sandbox. The program runs in an isolated process with a time limit, no network and no files;
it may only use the Python standard library and torch. Reading anything but its arguments is
treated as cheating.
"""

# What is scored, by objective (`[evaluator] objective`): the search optimises exactly this.
SCORED = {
    "efficiency": """\
What is scored: the modelled time of serving the next window with your placement, against an
ideal one (efficiency = ideal time / your time, in (0, 1]). The placement is computed from window
i and served on window i+1, so loads drift under it. The modelled time of one rebalance period is
- compute: each layer waits for its most loaded GPU (balance across GPUs);
- communication: every token is sent to the GPUs holding its experts and the results come back;
  a token crosses to each other node it touches once, over a NIC about 3x slower than NVLink
  inside a node. Tokens pick their experts from a few expert groups (DeepSeek-V3: 4 of 8 groups,
  E/num_groups consecutive experts each), so keeping a group's replicas on few nodes saves
  cross-node traffic (what DeepSeek's hierarchical policy does);
- migration: at every rebalance each GPU must load the weights of every expert it did not hold
  under the placement in force (tens of MB each). Keeping experts where they are is worth a lot;
  moving one pays only if the balance it buys is worth the copy.
Scores are averaged over several deployment shapes (from one node of 8 GPUs to 144 GPUs in 18
nodes) and many windows. Runtime counts only through a bounded factor: combined_score =
efficiency * P / (P + t), P the rebalance period and t the median call time, so a fast program
loses almost nothing, while a very slow one (seconds) does.""",
    "balancedness": """\
What is scored: GPU-level balancedness = sum_l mean_g load[l, g] / sum_l max_g load[l, g] (in
(0, 1]): a layer's time is set by its most loaded GPU, and layers run one after another. The
placement is computed from window i and scored on window i+1: loads drift between windows, so a
placement that is robust to forecast error beats one that is perfect on the window it was fitted
on. Cross-node traffic and expert migration are not scored under this objective. Scores are
averaged over several deployment shapes and many windows. Runtime counts only through a bounded
factor: combined_score = balancedness * P / (P + t), P the rebalance period and t the median call
time, so a fast program loses almost nothing, while a very slow one (seconds) does.""",
}


def task_statement(objective: str) -> str:
    """The task as the model reads it, saying exactly what `objective` scores."""
    return TASK_STATEMENT.format(score=SCORED[objective])

FORMAT_RULES = """\
Answer with a short explanation, then exactly these parts:

<NAME>
a_short_snake_case_name
</NAME>

<DESCRIPTION>
What you changed and why it should score higher.
</DESCRIPTION>

<DIFF>
<<<<<<< SEARCH
lines copied exactly from the current program
=======
the lines that replace them
>>>>>>> REPLACE
</DIFF>

Rules for the DIFF:
- One or more SEARCH/REPLACE blocks; they are applied in order, each to the result of the last.
- Each SEARCH must be copied exactly (indentation and comments included) from the current program
  and must match exactly one place in it; include a few surrounding lines to make it unique.
- Edit only between the lines `# EVOLVE-BLOCK-START` and `# EVOLVE-BLOCK-END`. Keep the function
  `rebalance_experts` and its signature working.
- To rewrite the whole program instead, replace <DIFF>...</DIFF> by <CODE>the complete
  program</CODE>, keeping the EVOLVE-BLOCK markers and everything outside them unchanged.
"""

SYSTEM_ROLE = ("You are an expert in GPU systems, combinatorial optimisation and PyTorch. "
               "You improve a program step by step; each answer is one focused, correct change.")

CHARS_PER_TOKEN = 3.5  # code and English prose both tokenise at roughly 3.5-4 characters/token
TOKENS_PER_MESSAGE = 4  # role and separators the chat template adds around every message
EXCERPT_MAX_LINES = 12  # a failing edit is shown by its first lines: enough to recognise it


@dataclass(frozen=True)
class ProgramView:
    """The parent: what the model edits, with the evaluator's figures and feedback on it."""

    name: str
    description: str
    code: str
    metrics: Mapping[str, float]
    feedback: str = ""


@dataclass(frozen=True)
class Inspiration:
    """Another program shown for ideas; `code=None` once `fit_to_context` dropped it for space."""

    name: str
    description: str
    scores: Mapping[str, float]
    code: str | None


@dataclass(frozen=True)
class FailedAttempt:
    """A recent failure on this lineage: the exact error and, while space allows, the edit itself."""

    name: str
    error: str
    excerpt: str | None = None


@dataclass(frozen=True)
class PromptContext:
    task: str
    parent: ProgramView
    inspirations: tuple[Inspiration, ...] = ()
    failures: tuple[FailedAttempt, ...] = ()
    format_rules: str = FORMAT_RULES


def _scores(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {_number(v)}" for k, v in values.items()) or "no scores"


def _number(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _code(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def _excerpt(text: str) -> str:
    lines = text.rstrip().splitlines()
    shown = "\n".join(lines[:EXCERPT_MAX_LINES])
    more = len(lines) - EXCERPT_MAX_LINES
    return shown + (f"\n... ({more} more lines)" if more > 0 else "")


def _parent_section(parent: ProgramView) -> str:
    parts = [f"# Current program: {parent.name}", parent.description.strip() or "(no description)",
             "## Its scores"]
    parts += [f"- {k}: {_number(v)}" for k, v in parent.metrics.items()] or ["- not evaluated yet"]
    if parent.feedback.strip():
        parts += ["## Evaluator feedback", parent.feedback.strip()]
    parts += ["## Code", _code(parent.code)]
    return "\n".join(parts)


def _inspiration_section(inspirations: Sequence[Inspiration]) -> str:
    parts = ["# Other programs, for ideas (do not copy them wholesale)"]
    for i, insp in enumerate(inspirations, 1):
        parts.append(f"## {i}. {insp.name} ({_scores(insp.scores)})")
        parts.append(insp.description.strip() or "(no description)")
        if insp.code is not None:
            parts.append(_code(insp.code))
    return "\n".join(parts)


def _failure_section(failures: Sequence[FailedAttempt]) -> str:
    parts = ["# Recent attempts on this program that failed (learn from the errors; do not repeat them)"]
    for failure in failures:
        parts.append(f"## {failure.name}\nError: {failure.error.strip()}")
        if failure.excerpt:
            parts.append("The edit:\n```\n" + _excerpt(failure.excerpt) + "\n```")
    return "\n".join(parts)


def build_messages(ctx: PromptContext) -> list[dict[str, str]]:
    """System message (role + answer format) and one user message (task, parent, context)."""
    sections = [ctx.task.strip(), _parent_section(ctx.parent)]
    if ctx.inspirations:
        sections.append(_inspiration_section(ctx.inspirations))
    if ctx.failures:
        sections.append(_failure_section(ctx.failures))
    sections.append("Propose one change to the current program that raises combined_score.")
    return [
        {"role": "system", "content": f"{SYSTEM_ROLE}\n\n{ctx.format_rules.strip()}"},
        {"role": "user", "content": "\n\n".join(sections)},
    ]


def build_fix_message(error: str) -> dict[str, str]:
    """The retry turn after a failed patch: the engine's exact error, and what to do about it."""
    return {"role": "user", "content": (
        f"Your edit could not be applied: {error.strip()}\n\n"
        "Answer again with the same format (NAME, DESCRIPTION, DIFF). Copy every SEARCH text "
        "exactly from the current program shown above, make each one match a single place, and "
        "edit only inside the EVOLVE block.")}


def build_duplicate_message(twin: str) -> dict[str, str]:
    """The retry turn after a change that rebuilt a program already evaluated (`twin` names it)."""
    return {"role": "user", "content": (
        f"Your edit applied, but the resulting program is the {twin}: it was already evaluated. "
        "Propose a different change, in the same format (NAME, DESCRIPTION, DIFF).")}


def build_cut_off_message(max_output_tokens: int | None) -> dict[str, str]:
    """The retry turn after an answer cut off at the output limit (finish_reason "length").

    Not `build_fix_message`: nothing in a cut-off answer is wrong, it is too long, and the way to
    fit is a shorter answer (less thinking aloud, small SEARCH texts, a diff rather than a rewrite
    of the whole program). `max_output_tokens` None: the endpoint's own limit, size unknown.
    """
    limit = f" of {max_output_tokens} tokens" if max_output_tokens else ""
    return {"role": "user", "content": (
        f"Your answer was cut off at the output limit{limit} before it was complete, so it was not applied. "
        "Answer again, shorter: keep the explanation and any reasoning brief, and send SEARCH/REPLACE blocks "
        "whose SEARCH quotes only the few lines that change (with enough neighbours to match one place), "
        "not a full rewrite in <CODE>. Same format (NAME, DESCRIPTION, DIFF).")}


def estimate_tokens(messages: Sequence[dict[str, str]]) -> int:
    """A tokenizer-free estimate: ceil(chars / 3.5) per message plus 4 for the chat template.

    3.5 characters per token is about right for Python code and technical English with common
    BPE vocabularies (GPT-4/Qwen/Llama); it errs towards more tokens, the safe side for a
    context check. Exact counts would need each model's tokenizer, which we do not have offline.
    """
    return sum(math.ceil(len(m.get("content", "")) / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE for m in messages)


def _shrink_steps(ctx: PromptContext) -> list[PromptContext]:
    """Successively smaller contexts, least valuable content dropped first."""
    steps = []
    insp = list(ctx.inspirations)
    for i in reversed(range(len(insp))):  # the last inspirations are the least relevant
        if insp[i].code is not None:
            insp[i] = dataclasses.replace(insp[i], code=None)
            steps.append(dataclasses.replace(ctx, inspirations=tuple(insp)))
    while insp:
        insp.pop()
        steps.append(dataclasses.replace(ctx, inspirations=tuple(insp)))
    base = dataclasses.replace(ctx, inspirations=())
    fails = list(ctx.failures)
    for i in range(len(fails)):  # the oldest failures come first and go first
        if fails[i].excerpt:
            fails[i] = dataclasses.replace(fails[i], excerpt=None)
            steps.append(dataclasses.replace(base, failures=tuple(fails)))
    while fails:
        fails.pop(0)
        steps.append(dataclasses.replace(base, failures=tuple(fails)))
    return steps


def fit_to_context(ctx: PromptContext, context_tokens: int, max_output_tokens: int) -> PromptContext:
    """The richest version of `ctx` whose prompt plus the answer fits the model's context.

    Drops, in order: inspirations' code, inspirations, failures' edit excerpts, failures. Raises
    UserError when even the task and the parent alone do not fit, so an undersized context is
    reported before the run instead of as a failing call hours into it.
    """
    budget = context_tokens - max_output_tokens
    for candidate in [ctx, *_shrink_steps(ctx)]:
        if estimate_tokens(build_messages(candidate)) <= budget:
            return candidate
    bare = dataclasses.replace(ctx, inspirations=(), failures=())
    need = estimate_tokens(build_messages(bare)) + max_output_tokens
    raise UserError(
        f"prompt needs ~{need} tokens (including {max_output_tokens} for the answer) but the model's "
        f"context is {context_tokens}; raise context_tokens or use a larger-context model")

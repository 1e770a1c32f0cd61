"""Prompt building: what the model sees, and fitting it into the model's context up front."""
from __future__ import annotations

import pytest

from evaluator.errors import UserError
from harness.proposers.prompts import (
    FORMAT_RULES,
    SCORED,
    FailedAttempt,
    Inspiration,
    ProgramView,
    PromptContext,
    build_cut_off_message,
    build_fix_message,
    build_messages,
    estimate_tokens,
    fit_to_context,
    task_statement,
)

PARENT_CODE = "# EVOLVE-BLOCK-START\ndef place():\n    return 1\n# EVOLVE-BLOCK-END\n"


def context(n_inspirations: int = 2, n_failures: int = 2, code_lines: int = 200) -> PromptContext:
    big = "\n".join(f"x_{i} = {i}  # some inspiration code line" for i in range(code_lines))
    return PromptContext(
        task=task_statement("efficiency"),
        parent=ProgramView(name="seed_variant", description="greedy packing", code=PARENT_CODE,
                           metrics={"combined_score": 0.81234, "runtime_ms": 12.5},
                           feedback="balancedness 0.81 on window 3; bound 0.97"),
        inspirations=tuple(Inspiration(name=f"insp{i}", description=f"idea {i}",
                                       scores={"combined_score": 0.8 + i / 100},
                                       code=f"# inspiration {i}\n{big}") for i in range(n_inspirations)),
        failures=tuple(FailedAttempt(name=f"fail{i}", error=f"SEARCH block 1 not found (attempt {i})",
                                     excerpt="\n".join(f"edit line {j}" for j in range(30)))
                       for i in range(n_failures)),
    )


def user_text(ctx: PromptContext) -> str:
    system, user = build_messages(ctx)
    assert (system["role"], user["role"]) == ("system", "user")
    return user["content"]


def test_prompt_carries_task_parent_inspirations_and_exact_failures():
    ctx = context()
    system, user = build_messages(ctx)
    assert "<<<<<<< SEARCH" in system["content"] and "EVOLVE-BLOCK-START" in system["content"]
    text = user["content"]
    assert text.startswith(task_statement("efficiency").strip())
    assert PARENT_CODE.rstrip() in text
    assert "combined_score: 0.8123" in text and "runtime_ms: 12.5" in text
    assert "balancedness 0.81 on window 3; bound 0.97" in text
    assert "## 2. insp1 (combined_score 0.8100)" in text and "# inspiration 1" in text
    assert "Error: SEARCH block 1 not found (attempt 0)" in text
    assert "edit line 11\n... (18 more lines)" in text and "edit line 12" not in text
    assert build_messages(ctx) == build_messages(context())  # pure: same context, same prompt


@pytest.mark.parametrize("objective, facts", [
    ("efficiency", ("efficiency = ideal time / your time", "migration", "cross-node", "old_global_expert_indices",
                    "efficiency * P / (P + t)")),
    ("balancedness", ("sum_l mean_g load[l, g] / sum_l max_g load[l, g]", "balancedness * P / (P + t)",
                      "not scored under this objective")),
])
def test_the_task_statement_says_exactly_what_the_objective_scores(objective, facts):
    statement = task_statement(objective)
    for fact in (*facts, "window i+1", "no network and no files", "sums to R", "padded with", "may\nkeep state",
                 "fresh windows"):
        assert fact in statement
    other = "balancedness" if objective == "efficiency" else "efficiency"
    assert SCORED[other] not in statement


def test_fix_message_quotes_the_engine_error():
    error = "SEARCH block 2 does not match; nearest miss at line 57 (indentation differs)"
    message = build_fix_message(error)
    assert message["role"] == "user" and error in message["content"]


@pytest.mark.parametrize("limit, said", [(8192, "cut off at the output limit of 8192 tokens"),
                                         (None, "cut off at the output limit before")])
def test_cut_off_message_names_the_limit_and_asks_for_a_short_diff(limit, said):
    message = build_cut_off_message(limit)
    assert message["role"] == "user" and said in message["content"]
    assert "not a full rewrite in <CODE>" in message["content"] and "(NAME, DESCRIPTION, DIFF)" in message["content"]


def test_estimate_is_chars_over_3_5_plus_message_overhead():
    assert estimate_tokens([{"role": "user", "content": "x" * 350}]) == 104
    assert estimate_tokens([{"role": "user", "content": "x" * 351}, {"role": "system", "content": ""}]) == 109


def budget_for(ctx: PromptContext, max_output: int = 1000) -> int:
    return estimate_tokens(build_messages(ctx)) + max_output


def test_fit_keeps_everything_when_it_fits():
    ctx = context()
    assert fit_to_context(ctx, budget_for(ctx), 1000) == ctx


def test_fit_drops_inspiration_code_first_then_inspirations_then_excerpts():
    ctx = context()
    shrunk = fit_to_context(ctx, budget_for(ctx) - 1, 1000)
    assert [i.code is None for i in shrunk.inspirations] == [False, True]  # the last one loses its code first
    assert shrunk.failures == ctx.failures

    no_code = PromptContext(ctx.task, ctx.parent, tuple(Inspiration(i.name, i.description, i.scores, None)
                                                         for i in ctx.inspirations), ctx.failures)
    shrunk = fit_to_context(ctx, budget_for(no_code) - 1, 1000)
    assert [i.name for i in shrunk.inspirations] == ["insp0"] and shrunk.failures == ctx.failures

    no_insp = PromptContext(ctx.task, ctx.parent, (), ctx.failures)
    shrunk = fit_to_context(ctx, budget_for(no_insp) - 1, 1000)
    assert shrunk.inspirations == ()
    assert [f.excerpt is None for f in shrunk.failures] == [True, False]  # the oldest excerpt goes first
    assert [f.error for f in shrunk.failures] == [f.error for f in ctx.failures]


def test_fit_raises_a_user_error_when_the_parent_alone_does_not_fit():
    ctx = context()
    bare = PromptContext(ctx.task, ctx.parent)
    need = budget_for(bare)
    assert fit_to_context(ctx, need, 1000) == bare
    with pytest.raises(UserError) as info:
        fit_to_context(ctx, need - 1, 1000)
    assert str(info.value) == (f"prompt needs ~{need} tokens (including 1000 for the answer) but the model's "
                               f"context is {need - 1}; raise context_tokens or use a larger-context model")


def test_format_rules_demand_exact_copies_inside_the_evolve_block():
    assert "copied exactly" in FORMAT_RULES and "EVOLVE-BLOCK-END" in FORMAT_RULES and "<CODE>" in FORMAT_RULES

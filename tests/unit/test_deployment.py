"""Deployment constants: presets for every built-in scenario, field checks that name the field, overrides."""
from __future__ import annotations

from dataclasses import replace

import pytest

from evaluator.errors import UserError
from evaluator.workloads.deployment import DEEPSEEK_V3, QWEN3_30B_A3B, DeploymentCosts, scenario_costs, trace_costs
from evaluator.workloads.scenarios import DEEPSEEK_V3_PREFILL, QWEN3_30B, Shape, suite, suite_names


def test_every_built_in_scenario_has_constants_that_fit_its_shape() -> None:
    for name in suite_names():
        for scenario in suite(name):
            scenario_costs(scenario.name).check(scenario.name, scenario.shape)


def test_unknown_scenario_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no deployment constants for scenario 'mixtral'"):
        scenario_costs("mixtral")


def test_derived_sizes_of_deepseek_v3() -> None:
    # 3 projections of 7168 x 2048 FP8 weights: the ~44 MB per expert a migration copies.
    assert DEEPSEEK_V3.expert_weight_bytes == 3 * 7168 * 2048 == 44_040_192
    assert DEEPSEEK_V3.flops_per_assignment == 2 * 3 * 7168 * 2048
    assert QWEN3_30B_A3B.expert_weight_bytes == 3 * 2048 * 768 * 2  # BF16


def test_rebalance_period_defaults_to_one_window() -> None:
    assert DEEPSEEK_V3.period_steps == DEEPSEEK_V3.steps_per_window == 100
    assert replace(DEEPSEEK_V3, steps_per_window=50).period_steps == 50
    assert replace(DEEPSEEK_V3, rebalance_period_steps=1000).period_steps == 1000


@pytest.mark.parametrize("field, value", [
    ("nvlink_bytes_per_s", 0.0),
    ("internode_bytes_per_s", -50e9),
    ("flops_per_s", float("nan")),
    ("hidden_size", 0),
    ("hidden_size", 7168.5),
    ("moe_intermediate_size", "2048"),
    ("experts_per_token", True),
    ("dispatch_bytes_per_value", float("inf")),
    ("steps_per_window", -1),
    ("rebalance_period_steps", 0),
    ("flop_efficiency", 0.0),
    ("flop_efficiency", 1.5),
])
def test_check_names_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(UserError, match=f"^here: deployment constant {field} must be"):
        replace(DEEPSEEK_V3, **{field: value}).check("here")


def test_check_against_the_shape() -> None:
    with pytest.raises(UserError, match="groups_per_token 4 exceeds the 1 expert groups"):
        DEEPSEEK_V3.check("trace", replace(DEEPSEEK_V3_PREFILL, num_groups=1))
    # 2 groups of 32 experts cannot supply 80 distinct experts to a token.
    with pytest.raises(UserError, match="experts_per_token 80 exceeds the 64 experts"):
        replace(DEEPSEEK_V3, experts_per_token=80, groups_per_token=2).check("trace", DEEPSEEK_V3_PREFILL)
    DEEPSEEK_V3.check("trace", DEEPSEEK_V3_PREFILL)


def test_with_overrides_replaces_fields_and_checks_them() -> None:
    costs = DEEPSEEK_V3.with_overrides({"hidden_size": 4096, "nvlink_bytes_per_s": 400e9}, "config")
    assert (costs.hidden_size, costs.nvlink_bytes_per_s) == (4096, 400e9)
    assert costs.expert_weight_bytes == 3 * 4096 * 2048  # derived sizes follow the override
    assert DEEPSEEK_V3.hidden_size == 7168
    with pytest.raises(UserError, match="unknown deployment constant hidden, nvlink_bw; known: hidden_size"):
        DEEPSEEK_V3.with_overrides({"hidden": 1, "nvlink_bw": 1}, "config")
    with pytest.raises(UserError, match="deployment constant flop_efficiency must be in"):
        DEEPSEEK_V3.with_overrides({"flop_efficiency": 62}, "config")


def test_trace_costs_by_expert_count() -> None:
    assert trace_costs(replace(DEEPSEEK_V3_PREFILL, num_layers=3), {}, "t.json") == DEEPSEEK_V3
    assert trace_costs(QWEN3_30B, {"steps_per_window": 50}, "t.json") == replace(QWEN3_30B_A3B, steps_per_window=50)
    # Deployed with one group, the model's routing is modelled over all of it, unless set explicitly.
    assert trace_costs(replace(DEEPSEEK_V3_PREFILL, num_groups=1), {}, "t.json").groups_per_token == 1
    with pytest.raises(UserError, match="groups_per_token 4 exceeds the 1 expert groups"):
        trace_costs(replace(DEEPSEEK_V3_PREFILL, num_groups=1), {"groups_per_token": 4}, "t.json")


def test_trace_costs_of_an_unknown_model_need_its_own_numbers() -> None:
    shape = Shape(4, 64, 80, 1, 2, 16)
    with pytest.raises(UserError, match="64 experts per layer matches no known model; set the deployment "
                                        "constants moe_intermediate_size, experts_per_token, groups_per_token"):
        trace_costs(shape, {"hidden_size": 1024}, "t.json")
    model = {"hidden_size": 1024, "moe_intermediate_size": 512, "experts_per_token": 4, "groups_per_token": 1}
    costs = trace_costs(shape, model, "t.json")
    assert isinstance(costs, DeploymentCosts)
    assert (costs.hidden_size, costs.nvlink_bytes_per_s) == (1024, DEEPSEEK_V3.nvlink_bytes_per_s)

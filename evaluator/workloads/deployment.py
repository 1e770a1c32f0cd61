"""What one MoE deployment pays per token, per byte and per expert: the constants of the cost model.

`evaluator.scoring.cost_model` turns a placement and a load window into modelled time (expert
compute, dispatch/combine traffic over NVLink and the NICs, expert migration at a rebalance).
The numbers it needs live here, one frozen `DeploymentCosts` per model and cluster, each field
with its source. The built-in scenarios get presets by name; a `--trace` scenario gets the preset
of the known model with its expert count, with any field overridden from flags or the config.

All built-in presets assume DeepSeek's serving cluster: H800 nodes of 8 GPUs, NVLink inside a
node, one 400 Gb/s InfiniBand NIC per GPU across nodes (the DeepSeek-V3 report, section 3.1 and
3.2.2). The Qwen3 models run in BF16 on the same cluster, so scenarios differ only in the model.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from evaluator.errors import UserError
from evaluator.workloads.shape import Shape

_INT_FIELDS = ("hidden_size", "moe_intermediate_size", "experts_per_token", "groups_per_token",
               "steps_per_window", "rebalance_period_steps")
# The model's own numbers: what a `--trace` of a model with an unknown expert count must set.
MODEL_FIELDS = ("hidden_size", "moe_intermediate_size", "experts_per_token", "groups_per_token")


@dataclass(frozen=True)
class DeploymentCosts:
    """Constants of one deployment (model x cluster) for the cost model; see the module docstring.

    Byte sizes are per value (1 for FP8, 2 for BF16); bandwidths are per GPU and per direction.
    """

    hidden_size: int  # values per token sent to an expert (the model's hidden size)
    moe_intermediate_size: int  # an expert's FFN width
    experts_per_token: int  # top-k routed experts per token
    # Groups a token picks its experts from (group-limited routing); the shape's num_groups when
    # routing is not group-limited (Qwen3 has one group).
    groups_per_token: int
    dispatch_bytes_per_value: float  # activation bytes per value sent to an expert
    combine_bytes_per_value: float  # bytes per value of an expert's output sent back
    weight_bytes_per_value: float  # bytes per expert weight (what a migration copies)
    nvlink_bytes_per_s: float  # per GPU, inside a node
    internode_bytes_per_s: float  # per GPU NIC, across nodes
    flops_per_s: float  # dense peak per GPU at the experts' precision
    flop_efficiency: float  # share of the peak a grouped expert GEMM reaches, in (0, 1]
    steps_per_window: int = 100  # forward steps summed into one load window (the ADRS trace's 100)
    # Steps between two rebalances; None: once per window, as the evaluator re-places every window.
    rebalance_period_steps: int | None = None

    @property
    def period_steps(self) -> int:
        """Forward steps one placement serves before the next rebalance."""
        return self.steps_per_window if self.rebalance_period_steps is None else self.rebalance_period_steps

    @property
    def expert_weight_bytes(self) -> float:
        """Bytes of one routed expert: gate, up and down projections of hidden x intermediate each."""
        return 3 * self.hidden_size * self.moe_intermediate_size * self.weight_bytes_per_value

    @property
    def flops_per_assignment(self) -> float:
        """FLOPs of one token on one expert: three GEMMs of hidden x intermediate, 2 FLOPs per multiply-add."""
        return 2 * 3 * self.hidden_size * self.moe_intermediate_size

    def check(self, where: str, shape: Shape | None = None) -> None:
        """UserError naming the field when a constant cannot describe a deployment (and, given the
        shape, when the routing cannot exist on it)."""
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "rebalance_period_steps" and value is None:
                continue
            if not _is_number(value) or value <= 0 or (field.name in _INT_FIELDS and not isinstance(value, int)):
                kind = "a positive integer" if field.name in _INT_FIELDS else "a positive number"
                raise UserError(f"{where}: deployment constant {field.name} must be {kind}, got {value!r}; "
                                f"set {field.name} to {kind}")
        if self.flop_efficiency > 1:
            raise UserError(f"{where}: deployment constant flop_efficiency must be in (0, 1] (a share of the "
                            f"peak), got {self.flop_efficiency!r}; set flop_efficiency to at most 1")
        if shape is not None:
            self._check_routing(where, shape)

    def _check_routing(self, where: str, shape: Shape) -> None:
        if self.groups_per_token > shape.num_groups:
            raise UserError(f"{where}: deployment constant groups_per_token {self.groups_per_token} exceeds the "
                            f"{shape.num_groups} expert groups; set groups_per_token to at most {shape.num_groups} "
                            f"(equal to the group count when routing is not group-limited)")
        reachable = self.groups_per_token * (shape.num_experts // shape.num_groups)
        if self.experts_per_token > reachable:
            raise UserError(f"{where}: deployment constant experts_per_token {self.experts_per_token} exceeds "
                            f"the {reachable} experts in a token's {self.groups_per_token} groups; set "
                            f"experts_per_token to at most {reachable} or raise groups_per_token")

    def with_overrides(self, values: Mapping[str, Any], where: str) -> DeploymentCosts:
        """These constants with some fields replaced (from flags or the config), field-checked.

        Values come from flags or TOML, hence Any: UserError for an unknown name or a value that is
        not a number; the shape-dependent checks are left to `check(where, shape)` once the
        scenario's shape is known.
        """
        known = [field.name for field in fields(self)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"{where}: unknown deployment constant {', '.join(unknown)}; "
                            f"known: {', '.join(known)}")
        costs = replace(self, **values)
        costs.check(where)
        return costs


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- presets --------------------------------------------------------------------------------------

# Hardware: DeepSeek-V3 technical report (arXiv 2412.19437) section 3.2.2: "NVLink offers a
# bandwidth of 160 GB/s, roughly 3.2 times that of IB (50 GB/s)", per H800 GPU; DeepEP's README
# measures the same cluster at 153-158 GB/s (NVLink) and 43-58 GB/s (RDMA, CX7 400 Gb/s NIC).
_NVLINK = 160e9
_INFINIBAND = 50e9
# NVIDIA H100/H800 SXM datasheet (Hopper whitepaper): dense tensor-core peak 1979 TFLOPS FP8 and
# 989 TFLOPS BF16 (the datasheet's 3958/1979 are with 2:4 sparsity); H800 keeps the H100's compute.
_FP8_FLOPS = 1979e12
_BF16_FLOPS = 989e12
# DeepGEMM README (github.com/deepseek-ai/DeepGEMM), H800, grouped contiguous-layout MoE GEMMs at
# DeepSeek-V3 shapes: 1297 TFLOPS (N=4096, K=7168: gate+up) and 1099 TFLOPS (N=7168, K=2048:
# down). Weighted by their 2:1 FLOP share that is ~1224 TFLOPS = 0.62 of the FP8 peak. No BF16
# grouped figure is published there; the Qwen3 presets assume the same share of the BF16 peak.
_GROUPED_GEMM_EFFICIENCY = 0.62

# DeepSeek-V3 config.json (huggingface.co/deepseek-ai/DeepSeek-V3): hidden_size 7168,
# moe_intermediate_size 2048, num_experts_per_tok 8, n_group 8, topk_group 4; FP8 weights
# (quantization_config fp8, 128x128 weight blocks). The report (section 3.3.3) dispatches in FP8 and
# combines in BF16. FP8's per-128-value scales (+3% of a dispatch, +0.02% of a weight) are left out.
DEEPSEEK_V3 = DeploymentCosts(
    hidden_size=7168, moe_intermediate_size=2048, experts_per_token=8, groups_per_token=4,
    dispatch_bytes_per_value=1.0, combine_bytes_per_value=2.0, weight_bytes_per_value=1.0,
    nvlink_bytes_per_s=_NVLINK, internode_bytes_per_s=_INFINIBAND,
    flops_per_s=_FP8_FLOPS, flop_efficiency=_GROUPED_GEMM_EFFICIENCY)

# Qwen3-30B-A3B config.json (huggingface.co/Qwen/Qwen3-30B-A3B): hidden_size 2048,
# moe_intermediate_size 768, num_experts 128, num_experts_per_tok 8, no expert groups,
# torch_dtype bfloat16: weights, dispatch and combine in BF16.
QWEN3_30B_A3B = DeploymentCosts(
    hidden_size=2048, moe_intermediate_size=768, experts_per_token=8, groups_per_token=1,
    dispatch_bytes_per_value=2.0, combine_bytes_per_value=2.0, weight_bytes_per_value=2.0,
    nvlink_bytes_per_s=_NVLINK, internode_bytes_per_s=_INFINIBAND,
    flops_per_s=_BF16_FLOPS, flop_efficiency=_GROUPED_GEMM_EFFICIENCY)

# Qwen3-235B-A22B config.json (huggingface.co/Qwen/Qwen3-235B-A22B): hidden_size 4096,
# moe_intermediate_size 1536, num_experts 128, num_experts_per_tok 8, no expert groups, bfloat16.
QWEN3_235B_A22B = replace(QWEN3_30B_A3B, hidden_size=4096, moe_intermediate_size=1536)

MODEL_COSTS = {"deepseek-v3": DEEPSEEK_V3, "qwen3-30b-a3b": QWEN3_30B_A3B, "qwen3-235b-a22b": QWEN3_235B_A22B}

# The built-in scenarios (evaluator/workloads/scenarios.py) by name: prefill and decode are the same
# model on the same cluster; only the shape (and so the placement) differs.
SCENARIO_COSTS = {
    "deepseek-v3-prefill": DEEPSEEK_V3,
    "deepseek-v3-decode": DEEPSEEK_V3,
    "deepseek-v3-prefill-quick": DEEPSEEK_V3,
    "qwen3-30b-a3b": QWEN3_30B_A3B,
    "qwen3-30b-a3b-12l": QWEN3_30B_A3B,
    "qwen3-235b-a22b": QWEN3_235B_A22B,
}

# A trace's model when nothing says otherwise, by expert count (as scenarios._KNOWN_DEPLOYMENTS).
_BY_EXPERT_COUNT = {256: DEEPSEEK_V3, 128: QWEN3_30B_A3B}


def scenario_costs(name: str) -> DeploymentCosts:
    """The preset of a built-in scenario (UserError naming the known ones otherwise)."""
    if name not in SCENARIO_COSTS:
        raise UserError(f"no deployment constants for scenario '{name}'; known: {', '.join(SCENARIO_COSTS)} "
                        "(a --trace scenario takes trace_costs)")
    return SCENARIO_COSTS[name]


def default_costs(shape: Shape) -> DeploymentCosts:
    """Constants for a shape given none: the known model with its expert count (DeepSeek-V3's
    otherwise), its routing group-limited only as far as the shape has groups."""
    base = _BY_EXPERT_COUNT.get(shape.num_experts, DEEPSEEK_V3)
    return replace(base, groups_per_token=min(base.groups_per_token, shape.num_groups))


def trace_costs(shape: Shape, overrides: Mapping[str, Any], where: str) -> DeploymentCosts:
    """Constants for a `--trace` scenario: the known model with the shape's expert count, then the
    overrides (flags or config), checked against the shape.

    Defaults: 256 experts -> DeepSeek-V3, 128 -> Qwen3-30B-A3B. Any other expert count takes
    DeepSeek-V3's cluster and precision, and the overrides must set the model's own numbers
    (`MODEL_FIELDS`). A trace deployed with fewer expert groups than the model routes over (e.g.
    DeepSeek-V3 with --groups 1) is modelled as routing over all of its groups, unless
    `groups_per_token` is set.
    """
    if shape.num_experts not in _BY_EXPERT_COUNT:
        missing = [name for name in MODEL_FIELDS if name not in overrides]
        if missing:
            raise UserError(f"{where}: {shape.num_experts} experts per layer matches no known model; set the "
                            f"deployment constants {', '.join(missing)}")
    costs = default_costs(shape).with_overrides(overrides, where)
    costs.check(where, shape)
    return costs

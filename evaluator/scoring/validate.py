"""Output checks (pure): every constraint of a valid placement, with a precise reason on failure.

A non-conforming return is invalid, never silently repaired: repairing it would score a program
that does not work in a serving engine (over-claimed `logcnt` and a `log2phy` that disagrees with
`phy2log` were public reward hacks). Each check names the tensor, the layer, the expert and the value.
"""
from __future__ import annotations

import torch

from evaluator.workloads.shape import Shape

_NAMES = ("phy2log", "log2phy", "logcnt")


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True entry of a boolean tensor."""
    return tuple(int(i) for i in mask.nonzero()[0])


def _check_types(outputs: tuple, shape: Shape) -> str | None:
    if not isinstance(outputs, tuple) or len(outputs) != 3:
        return f"expected a tuple (phy2log, log2phy, logcnt), got {type(outputs).__name__}"
    for name, tensor in zip(_NAMES, outputs):
        if not isinstance(tensor, torch.Tensor):
            return f"{name} is a {type(tensor).__name__}, expected a torch.Tensor"
        if tensor.dtype != torch.int64:
            return f"{name} has dtype {tensor.dtype}, expected torch.int64"
    phy2log, log2phy, logcnt = outputs
    L, E, R = shape.num_layers, shape.num_experts, shape.num_replicas
    if tuple(phy2log.shape) != (L, R):
        return f"phy2log has shape {tuple(phy2log.shape)}, expected ({L}, {R}) = (layers, replicas)"
    if tuple(logcnt.shape) != (L, E):
        return f"logcnt has shape {tuple(logcnt.shape)}, expected ({L}, {E}) = (layers, experts)"
    if log2phy.dim() != 3 or tuple(log2phy.shape[:2]) != (L, E):
        return f"log2phy has shape {tuple(log2phy.shape)}, expected ({L}, {E}, K) with K >= max replica count"
    return None


def _check_phy2log(phy2log: torch.Tensor, logcnt: torch.Tensor, shape: Shape) -> str | None:
    E = shape.num_experts
    bad = (phy2log < 0) | (phy2log >= E)
    if bad.any():
        l, s = _first(bad)
        return f"phy2log[{l}, {s}] = {int(phy2log[l, s])} is out of range [0, {E})"
    if (logcnt < 1).any():
        l, e = _first(logcnt < 1)
        return f"logcnt[{l}, {e}] = {int(logcnt[l, e])}: every expert needs at least one replica"
    counts = torch.zeros_like(logcnt).scatter_add_(1, phy2log, torch.ones_like(phy2log))
    wrong = counts != logcnt
    if wrong.any():
        l, e = _first(wrong)
        return (f"logcnt[{l}, {e}] = {int(logcnt[l, e])} but expert {e} occupies {int(counts[l, e])} "
                f"slots of phy2log in layer {l}")
    return None


def _check_log2phy(phy2log: torch.Tensor, log2phy: torch.Tensor, logcnt: torch.Tensor,
                   shape: Shape) -> str | None:
    """The first logcnt[l, e] entries of log2phy[l, e] are exactly the slots holding e; the rest are -1.

    Only the L*R used entries are checked one by one (the padded tensor is ~30x larger), which keeps
    validation of a DeepSeek-V3 placement well under a millisecond.
    """
    L, E, R = shape.num_layers, shape.num_experts, shape.num_replicas
    K = log2phy.shape[2]
    if K < int(logcnt.max()):
        return f"log2phy has K = {K} columns but an expert has {int(logcnt.max())} replicas"
    used = torch.arange(K).view(1, 1, K) < logcnt.unsqueeze(-1)
    padding_bad = (log2phy != -1) != used
    if padding_bad.any():
        l, e, k = _first(padding_bad)
        if used[l, e, k]:
            return f"log2phy[{l}, {e}, {k}] = -1 but logcnt[{l}, {e}] = {int(logcnt[l, e])}: the first logcnt " \
                   f"entries must be slots"
        return (f"log2phy[{l}, {e}, {k}] = {int(log2phy[l, e, k])}: entries past logcnt[{l}, {e}] = "
                f"{int(logcnt[l, e])} must be -1")
    slots = log2phy[used]  # row-major: layer by layer, expert by expert; exactly R per layer
    where = used.nonzero  # (l, e, k) of each used entry, only computed to name a violation

    range_bad = (slots < 0) | (slots >= R)
    if range_bad.any():
        l, e, k = (int(x) for x in where()[int(range_bad.nonzero()[0])])
        return f"log2phy[{l}, {e}, {k}] = {int(log2phy[l, e, k])} is out of range [0, {R})"
    layers = torch.arange(L).repeat_interleave(R)
    experts = torch.arange(E).repeat(L).repeat_interleave(logcnt.flatten())
    holder = phy2log[layers, slots]
    mismatch = holder != experts
    if mismatch.any():
        l, e, k = (int(x) for x in where()[int(mismatch.nonzero()[0])])
        return (f"log2phy[{l}, {e}, {k}] = {int(log2phy[l, e, k])} but phy2log[{l}, "
                f"{int(log2phy[l, e, k])}] = {int(phy2log[l, int(log2phy[l, e, k])])}, not expert {e}")
    ordered = slots.view(L, R).sort(dim=1).values
    repeated = ordered[:, 1:] == ordered[:, :-1]
    if repeated.any():
        l, s = _first(repeated)
        slot = int(ordered[l, s])
        count = int((slots.view(L, R)[l] == slot).sum())
        return f"slot {slot} of layer {l} appears {count} times in log2phy (must be exactly once)"
    return None


def validate_placement(outputs: tuple, shape: Shape) -> str | None:
    """None if (phy2log, log2phy, logcnt) is a valid placement for `shape`, else the first violation."""
    problem = _check_types(outputs, shape)
    if problem:
        return problem
    phy2log, log2phy, logcnt = outputs
    return _check_phy2log(phy2log, logcnt, shape) or _check_log2phy(phy2log, log2phy, logcnt, shape)

"""Validation: every constraint of a valid placement, each failure with a precise reason."""
import pytest
import torch

from evaluator.scoring.validate import validate_placement
from evaluator.workloads.scenarios import Shape

SHAPE = Shape(num_layers=2, num_experts=3, num_replicas=4, num_groups=1, num_nodes=1, num_gpus=2)


def _valid():
    phy2log = torch.tensor([[0, 1, 2, 0], [2, 1, 0, 2]])
    logcnt = torch.tensor([[2, 1, 1], [1, 1, 2]])
    log2phy = torch.tensor([[[0, 3], [1, -1], [2, -1]], [[2, -1], [1, -1], [0, 3]]])
    return phy2log, log2phy, logcnt


def test_valid_placement_passes():
    assert validate_placement(_valid(), SHAPE) is None


def test_log2phy_order_within_an_expert_is_free():
    phy2log, log2phy, logcnt = _valid()
    log2phy[0, 0] = torch.tensor([3, 0])
    assert validate_placement((phy2log, log2phy, logcnt), SHAPE) is None


def _mutated(edit):
    outputs = [t.clone() for t in _valid()]
    edit(outputs)
    return tuple(outputs)


@pytest.mark.parametrize("edit, reason", [
    (lambda o: o.__setitem__(0, o[0].tolist()), "phy2log is a list, expected a torch.Tensor"),
    (lambda o: o.__setitem__(2, o[2].to(torch.int32)), "logcnt has dtype torch.int32, expected torch.int64"),
    (lambda o: o.__setitem__(0, o[0].float()), "phy2log has dtype torch.float32"),
    (lambda o: o.__setitem__(0, o[0][:, :3]), "phy2log has shape (2, 3), expected (2, 4)"),
    (lambda o: o.__setitem__(2, o[2][:1]), "logcnt has shape (1, 3), expected (2, 3)"),
    (lambda o: o.__setitem__(1, o[1][0]), "log2phy has shape (3, 2), expected (2, 3, K)"),
    (lambda o: o[0].__setitem__((1, 2), 7), "phy2log[1, 2] = 7 is out of range [0, 3)"),
    (lambda o: o[2].__setitem__((0, 0), 3), "logcnt[0, 0] = 3 but expert 0 occupies 2 slots of phy2log in layer 0"),
    (lambda o: (o[0].__setitem__((0, 1), 0), o[2].__setitem__((0, 1), 0)),
     "logcnt[0, 1] = 0: every expert needs at least one replica"),
    (lambda o: o[1].__setitem__((0, 1, 1), 3), "log2phy[0, 1, 1] = 3: entries past logcnt[0, 1] = 1 must be -1"),
    (lambda o: o[1].__setitem__((1, 2, 1), 9), "log2phy[1, 2, 1] = 9 is out of range [0, 4)"),
    (lambda o: o[1].__setitem__((0, 0, 1), 1), "log2phy[0, 0, 1] = 1 but phy2log[0, 1] = 1, not expert 0"),
    (lambda o: o[1].__setitem__((0, 0, 1), 0), "slot 0 of layer 0 appears 2 times in log2phy"),
])
def test_each_violation_has_its_own_reason(edit, reason):
    assert reason in validate_placement(_mutated(edit), SHAPE)


def test_not_a_tuple():
    assert "expected a tuple" in validate_placement([1, 2, 3], SHAPE)
    assert "expected a tuple" in validate_placement((1, 2), SHAPE)


def test_k_too_small_for_the_replica_count():
    phy2log, log2phy, logcnt = _valid()
    assert "K = 1 columns but an expert has 2 replicas" in validate_placement(
        (phy2log, log2phy[:, :, :1].contiguous(), logcnt), SHAPE)

"""Candidate record: one serialisation, a score that never rewards failure, a hash blind to formatting."""
from __future__ import annotations

import json
from dataclasses import replace

from candidate_factory import candidate, failed
from evaluator.records import ScenarioResult, WindowResult
from harness.store.candidate import Candidate, code_hash, normalise_code

PROGRAM = '''"""Module docstring."""
import torch


def rebalance_experts(weight, num_replicas):
    """Spread the load."""
    total = weight.sum(-1)  # per layer
    return total / num_replicas
'''

REFORMATTED = '''import torch
def rebalance_experts(weight,num_replicas):
    # a new comment, blank lines gone, another docstring
    """Spread the load evenly, reworded."""
    total = weight.sum( -1 )
    return (total / num_replicas)
'''


def test_formatting_comments_and_docstrings_do_not_change_the_hash() -> None:
    assert code_hash(PROGRAM) == code_hash(REFORMATTED)


def test_a_changed_operation_changes_the_hash() -> None:
    assert code_hash(PROGRAM) != code_hash(PROGRAM.replace("total / num_replicas", "total // num_replicas"))
    assert code_hash(PROGRAM) != code_hash(PROGRAM.replace("-1", "0"))


def test_a_function_left_with_only_a_docstring_still_normalises_to_valid_python() -> None:
    code = 'def f():\n    """Only a docstring."""\n'
    compile(normalise_code(code), "<normalised>", "exec")


def test_code_that_does_not_parse_falls_back_to_whitespace_normalisation() -> None:
    broken = "def f(:\n    return 1   \n\n\n"
    assert code_hash(broken) == code_hash("def f(:\n    return 1\n")
    assert code_hash(broken) != code_hash("def f(:\n    return 2\n")


def test_round_trip_through_json_preserves_every_field() -> None:
    window = WindowResult(index=0, balancedness=0.8, balancedness_slot=0.3, balancedness_insample=0.9,
                          bound=0.99, runtime_ms=2.0)
    scenario = ScenarioResult(name="dsv3", shape={"num_layers": 58}, balancedness=0.8, balancedness_slot=0.3,
                              balancedness_insample=0.9, bound_gap=0.19, runtime_ms=2.0, combined_score=0.79,
                              windows=(window,))
    original = candidate(7, (3, 5), score=0.79, island=2)
    original = replace(original, evaluation=replace(original.evaluation, scenarios=(scenario,)),
                       commit="ab" * 20)
    restored = Candidate.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored == original


def test_invalid_candidates_score_zero_whatever_their_evaluation_claims() -> None:
    broken = candidate(4, (0,), valid=False)
    assert broken.score == 0.0 and not broken.valid
    lying = replace(candidate(5, (0,), score=0.9), status="invalid")
    assert lying.score == 0.0
    assert replace(candidate(6, (0,), score=0.9), evaluation=failed()).score == 0.0
    assert candidate(8, (0,), score=0.9).score == 0.9

"""Candidate record: one serialisation, a score that never rewards failure, a hash blind to formatting,
the one ranking rule and the one set of headline metrics."""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import replace

from candidate_factory import candidate, evaluation, failed

from evaluator.records import DeploymentFigures, Evaluation, ModelledTime, ScenarioResult, WindowResult
from harness.config.settings import PopulationSettings
from harness.search.population import Population
from harness.store.candidate import HEADLINE, Candidate, best_of, code_hash, metrics, normalise_code, ranked
from harness.store.status import Status

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
    lying = replace(candidate(5, (0,), score=0.9), status=Status.INVALID)
    assert lying.score == 0.0
    assert replace(candidate(6, (0,), score=0.9), evaluation=failed()).score == 0.0
    assert candidate(8, (0,), score=0.9).score == 0.9


def test_statuses_are_written_as_their_plain_values_so_earlier_runs_still_load() -> None:
    record = candidate(3, (0,)).to_dict()
    assert json.loads(json.dumps(record))["status"] == "valid"
    screened = Candidate.from_dict({**record, "status": "screened"})  # as a run written with strings has it
    assert screened.status is Status.SCREENED and not screened.valid


def test_one_ranking_rule_the_higher_score_then_the_older_candidate() -> None:
    seed, older, twin, lower = candidate(0, score=0.8), candidate(3, (0,), score=0.86), \
        candidate(5, (0,), score=0.86), candidate(1, (0,), score=0.84)
    broken = replace(candidate(6, (0,), score=0.99), evaluation=failed())
    run = [twin, broken, lower, seed, older]
    assert [c.id for c in ranked(run)] == [3, 5, 1, 0]
    assert best_of(run) == older and best_of([broken]) is None
    population = Population(PopulationSettings(islands=2), random.Random(0))
    for c in sorted(run, key=lambda c: c.id):
        population.add(replace(c, island=c.id % 2))
    assert population.best() == replace(older, island=1)  # the population ranks by the same rule


def test_metrics_are_the_headline_fields_of_a_valid_evaluation_only() -> None:
    fields = {f.name for f in dataclasses.fields(Evaluation)} | {"efficiency", "migrated_fraction", "nodes_per_token"}
    assert set(HEADLINE) <= fields  # a headline metric is a field (or deployment property) of the record
    values = metrics(replace(evaluation(0.81, 0.83, runtime_ms=4.5), speedup_vs_seed=None))
    assert values == {"combined_score": 0.81, "balancedness": 0.83, "balancedness_slot": 0.3, "runtime_ms": 4.5}
    assert metrics(failed()) == {} and metrics(None) == {}
    figures = DeploymentFigures(0.42, 0.1, 3.5, ModelledTime(1.0, 2.0, 0.5, 1.5))
    assert metrics(replace(evaluation(0.81), deployment=figures)).items() >= {
        "efficiency": 0.42, "migrated_fraction": 0.1, "nodes_per_token": 3.5}.items()

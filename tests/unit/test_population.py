"""Population: islands that stay apart, selection rules, migration, elitism, Pareto, resume, speed."""
from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from dataclasses import replace

import pytest
from candidate_factory import candidate

from evaluator.errors import UserError
from harness.config.settings import PopulationSettings
from harness.search.pareto import ParetoArchive
from harness.search.population import Migration, Population


def population(seed: int = 0, **settings: object) -> Population:
    pop = Population(PopulationSettings(**{"islands": 3, "migration_interval": 0, **settings}),
                     random.Random(seed))
    pop.add(candidate(0, score=0.3))
    return pop


def test_the_seed_starts_on_every_island_and_children_stay_on_their_parents_island() -> None:
    pop = population()
    assert [pop.pick_parent(i).id for i in range(3)] == [0, 0, 0]
    pop.add(candidate(1, (0,), score=0.9, island=2))
    pop.add(candidate(2, (1,), score=0.8, island=2))
    assert {c.id for c in pop.island_members(2)} == {0, 1, 2}
    assert {c.id for c in pop.island_members(0)} == {0}
    assert {pop.pick_parent(0).id for _ in range(50)} == {0}
    assert pop.island_best(2).id == 1 and pop.best().id == 1


def test_islands_take_turns_by_attempt_number() -> None:
    pop = population()
    assert [pop.island_for(a) for a in range(1, 7)] == [1, 2, 0, 1, 2, 0]


def test_invalid_candidates_are_never_parents_or_inspirations_but_are_remembered() -> None:
    pop = population(islands=1)
    broken = candidate(1, (0,), valid=False)
    pop.add(broken)
    assert {pop.pick_parent(0).id for _ in range(100)} == {0}
    assert pop.inspirations(pop.get(0), 0) == []
    assert pop.seen(broken.code_hash) is broken and len(pop) == 2


def ladder(size: int, **settings: object) -> Population:
    """One island; candidate i scores i / (size + 1)."""
    pop = population(islands=1, **settings)
    for i in range(1, size + 1):
        pop.add(candidate(i, (0,), score=i / (size + 1)))
    return pop


def test_power_law_prefers_the_best_ranks_and_is_reproducible() -> None:
    pop = ladder(19, power_law_exponent=1.5)
    picks = Counter(pop.pick_parent(0).id for _ in range(2000))
    assert picks[19] > picks[18] > picks[15] > picks[1] > 0
    one, two = ladder(19), ladder(19)  # same seed: same draws, whatever else uses `random`
    assert [one.pick_parent(0).id for _ in range(30)] == [two.pick_parent(0).id for _ in range(30)]


def test_exponent_zero_is_uniform_over_ranks() -> None:
    pop = ladder(3, power_law_exponent=0.0)
    picks = Counter(pop.pick_parent(0).id for _ in range(4000))
    assert all(800 < picks[i] < 1200 for i in range(4))


def test_weighted_selection_penalises_parents_with_many_children() -> None:
    pop = population(islands=1, selection="weighted")
    pop.add(candidate(1, (0,), score=0.8))
    pop.add(candidate(2, (0,), score=0.8))
    for i in range(3, 13):  # candidate 1 has had ten (failed) children, candidate 2 none
        pop.add(candidate(i, (1,), valid=False))
    picks = Counter(pop.pick_parent(0).id for _ in range(3000))
    assert picks[2] > 5 * picks[1]
    assert picks[2] > picks[0]  # above the median beats below it


def test_hill_climbing_always_takes_the_island_best() -> None:
    pop = population(selection="hill_climb")
    pop.add(candidate(1, (0,), score=0.5, island=1))
    pop.add(candidate(2, (1,), score=0.7, island=1))
    pop.add(candidate(3, (2,), score=0.6, island=1))
    assert {pop.pick_parent(1).id for _ in range(20)} == {2}


def test_the_island_best_is_never_lost() -> None:
    pop = population(islands=2, migration_interval=4)
    pop.add(candidate(1, (0,), score=0.95, island=1))
    for i in range(2, 60):
        pop.add(candidate(i, (0,), score=0.1 + (i % 7) / 100, island=i % 2))
    assert pop.island_best(1).id == 1 and pop.best().id == 1


def test_ring_migration_copies_each_island_best_to_the_next_as_a_reference() -> None:
    pop = population(islands=3, migration_interval=4)
    pop.add(candidate(1, (0,), score=0.6, island=0))
    pop.add(candidate(2, (0,), score=0.7, island=1))
    moves = pop.add(candidate(3, (0,), score=0.8, island=2))  # the 4th addition
    assert set(moves) == {Migration(1, 0, 1), Migration(2, 1, 2), Migration(3, 2, 0)}
    assert len(pop) == 4
    assert [c.id for c in pop.island_members(0)] == [3, 1, 0]
    assert pop.island_members(0)[0] is pop.get(3) and pop.get(3).island == 2  # a reference; home unchanged
    for i in range(4, 8):
        moves = pop.add(candidate(i, (0,), score=0.1, island=0))
    # Round two: 3 (now island 0's best) moves on to island 1; 2 and 3 are already where they'd go.
    assert moves == (Migration(3, 0, 1),)


def test_pareto_archive_keeps_the_trade_offs_only() -> None:
    archive = ParetoArchive()
    fast = candidate(1, score=0.5, balancedness=0.80, runtime_ms=1.0)
    balanced = candidate(2, score=0.6, balancedness=0.95, runtime_ms=50.0)
    dominated = candidate(3, score=0.4, balancedness=0.79, runtime_ms=2.0)
    tie = candidate(4, score=0.5, balancedness=0.80, runtime_ms=1.0)
    assert archive.add(fast) and archive.add(balanced)
    assert not archive.add(dominated) and not archive.add(tie) and not archive.add(candidate(5, valid=False))
    assert archive.members == [balanced, fast]
    better = candidate(6, score=0.7, balancedness=0.96, runtime_ms=0.5)
    assert archive.add(better) and archive.members == [better]


def test_inspirations_are_top_programs_plus_diverse_ones_never_the_parent_or_its_code() -> None:
    pop = population(num_inspirations=2, num_diverse=2)
    for i, score in enumerate([0.9, 0.8, 0.7, 0.6], start=1):
        pop.add(candidate(i, (0,), score=score, island=0))
    pop.add(candidate(5, (0,), score=0.85, island=1))
    pop.add(candidate(6, (0,), score=0.5, island=2, balancedness=0.99, runtime_ms=0.1))
    same_code = candidate(7, (1,), score=0.2, island=0, code=pop.get(1).code + "\n# reworded\n")
    assert same_code.code_hash == pop.get(1).code_hash
    pop.add(same_code)
    chosen = pop.inspirations(pop.get(1), 0)
    ids = [c.id for c in chosen]
    assert ids[:2] == [2, 3]  # the island's top, parent excluded
    assert set(ids[2:]) <= {5, 6} and len(ids) == 4
    assert 1 not in ids and 7 not in ids and len({c.code_hash for c in chosen}) == len(chosen)


def test_recent_failures_come_from_the_lineage_first_newest_first() -> None:
    pop = population()
    pop.add(candidate(1, (0,), score=0.6, island=1))
    pop.add(candidate(2, (1,), score=0.7, island=1))
    pop.add(candidate(3, (0,), valid=False, island=1))  # seed's child: an ancestor of 2's lineage
    pop.add(candidate(4, (2,), valid=False, island=1))
    pop.add(candidate(5, (0,), score=0.5, island=1))
    pop.add(candidate(6, (5,), valid=False, island=1))  # same island, other lineage
    pop.add(candidate(7, (0,), valid=False, island=2))  # lineage (seed), other island
    assert [f.id for f in pop.recent_failures(2, 3)] == [7, 4, 3]
    assert [f.id for f in pop.recent_failures(1, 5)] == [7, 3, 6, 4]


def test_common_ancestor_is_the_nearest_shared_one() -> None:
    pop = population()
    pop.add(candidate(1, (0,), island=1))
    pop.add(candidate(2, (1,), island=1))
    pop.add(candidate(3, (1,), island=2))
    pop.add(candidate(4, (2, 3), island=1))
    assert pop.common_ancestor(2, 3).id == 1
    assert pop.common_ancestor(4, 3).id == 3
    assert pop.common_ancestor(2, 0).id == 0


def test_pick_mate_offers_different_code_from_elsewhere() -> None:
    pop = population()
    assert pop.pick_mate(pop.get(0), 0) is None  # only the seed exists
    pop.add(candidate(1, (0,), score=0.6, island=1))
    assert pop.pick_mate(pop.get(0), 0).id == 1


def test_rebuilding_from_candidates_restores_the_same_state() -> None:
    rng = random.Random(3)
    settings = {"islands": 3, "migration_interval": 5}
    live = population(**settings)
    added = [live.get(0)]
    for i in range(1, 40):
        island = live.island_for(i)
        parent = live.pick_parent(island)
        child = candidate(i, (parent.id,), score=rng.random(), island=island, valid=rng.random() < 0.8)
        live.add(child)
        added.append(child)
    rebuilt = Population.from_candidates(live.settings, reversed(added), random.Random(0))
    for island in range(3):
        assert rebuilt.island_members(island) == live.island_members(island)
    assert rebuilt.best() == live.best() and rebuilt.pareto_front() == live.pareto_front()
    assert rebuilt.recent_failures(10, 5) == live.recent_failures(10, 5)
    with pytest.raises(UserError, match="islands = 2; resume with islands >= 3"):
        Population.from_candidates(replace(live.settings, islands=2), added, random.Random(0))


def test_add_pick_and_inspirations_stay_fast_at_500_candidates() -> None:
    pop = population(islands=4, migration_interval=10)
    rng = random.Random(1)
    timings = []
    for i in range(1, 600):
        island = pop.island_for(i)
        child = candidate(i, (rng.randrange(i),), score=rng.random(), island=island,
                          valid=rng.random() < 0.85)
        start = time.perf_counter()
        pop.add(child)
        parent = pop.pick_parent(island)
        pop.inspirations(parent, island)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings[500:]) < 0.005

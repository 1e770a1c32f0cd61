"""The population: islands, parent selection, migration, inspirations, failures, duplicates (pure state).

Every random choice draws from the `random.Random` handed in, so a run with the same seed and
the same model answers makes the same choices (no clock-seeded sampler). Nothing here reads or
writes files: the store persists candidates and `Population.from_candidates` rebuilds this
state from them on resume, replaying migrations at the same points.

Islands. Each candidate lives on one island and a child goes to the island its parent was
picked from (the controller sets `child.island = island`), so islands evolve apart instead
of every child landing on island 0. The seed (any parentless candidate) starts on every
island. Every `migration_interval` added candidates, each island's best is copied, as a
reference, to the next island in the ring. Nothing is ever evicted, so an island's best is
never lost (elitism) and Git keeps every candidate anyway.

Invalid candidates are kept (for the record, for duplicate detection and to show the model
its recent failures) but are never ranked, so never picked as parents or inspirations.
"""
from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from evaluator.errors import UserError
from harness.config.settings import PopulationSettings
from harness.search.pareto import ParetoArchive
from harness.search.selection import PowerLaw, weighted_index
from harness.store.candidate import Candidate, best_of, rank_key


@dataclass(frozen=True)
class Migration:
    """Candidate `candidate_id` (the best of island `source`) joined island `target`."""

    candidate_id: int
    source: int
    target: int


class Population:
    def __init__(self, settings: PopulationSettings, rng: random.Random) -> None:
        self.settings = settings
        self._rng = rng
        self._all: dict[int, Candidate] = {}
        # Per island: valid members' rank keys (-score, id), best first (`candidate.rank_key`).
        self._ranked: list[list[tuple[float, int]]] = [[] for _ in range(settings.islands)]
        self._member_ids: list[set[int]] = [set() for _ in range(settings.islands)]
        self._failures: list[Candidate] = []
        self._by_hash: dict[str, Candidate] = {}
        self._children: Counter[int] = Counter()
        self._pareto = ParetoArchive()
        self._power_law = PowerLaw(settings.power_law_exponent)

    @classmethod
    def from_candidates(cls, settings: PopulationSettings, candidates: Iterable[Candidate],
                        rng: random.Random) -> Population:
        """Rebuild the state of a run from its committed candidates (any order)."""
        population = cls(settings, rng)
        for candidate in sorted(candidates, key=lambda c: c.id):
            if candidate.island >= settings.islands:
                raise UserError(f"the run has candidates on island {candidate.island}, but [population] "
                                f"islands = {settings.islands}; resume with islands >= "
                                f"{candidate.island + 1}")
            population.add(candidate)
        return population

    # -- growing ---------------------------------------------------------------------------
    def add(self, candidate: Candidate) -> tuple[Migration, ...]:
        """Take in an evaluated candidate; returns the migrations this addition triggered."""
        if candidate.id in self._all:
            raise ValueError(f"candidate {candidate.id} is already in the population")
        unknown = [p for p in candidate.parent_ids if p not in self._all]
        if unknown or not 0 <= candidate.island < self.settings.islands:
            raise ValueError(f"candidate {candidate.id}: unknown parents {unknown} "
                             f"or island {candidate.island} out of range")
        self._all[candidate.id] = candidate
        self._children.update(candidate.parent_ids)
        self._by_hash.setdefault(candidate.code_hash, candidate)
        if candidate.valid:
            homes = range(self.settings.islands) if not candidate.parent_ids else (candidate.island,)
            for island in homes:
                self._join(candidate, island)
            self._pareto.add(candidate)
        else:
            self._failures.append(candidate)
        interval = self.settings.migration_interval
        if interval and self.settings.islands > 1 and len(self._all) % interval == 0:
            return self._migrate()
        return ()

    def _join(self, candidate: Candidate, island: int) -> None:
        self._member_ids[island].add(candidate.id)
        bisect.insort(self._ranked[island], rank_key(candidate))

    def _migrate(self) -> tuple[Migration, ...]:
        """Ring migration; sources are fixed first, so a program moves one step per round."""
        n = self.settings.islands
        bests = [self.island_best(i) for i in range(n)]
        moves = []
        for source, best in enumerate(bests):
            target = (source + 1) % n
            if best is not None and best.id not in self._member_ids[target]:
                self._join(best, target)
                moves.append(Migration(best.id, source, target))
        return tuple(moves)

    # -- choosing --------------------------------------------------------------------------
    def island_for(self, attempt: int) -> int:
        """Islands take turns by attempt number: balanced, and the same again after a resume."""
        return attempt % self.settings.islands

    def pick_parent(self, island: int) -> Candidate:
        """A valid member of `island`, by the configured selection rule."""
        ranked = self._ranked[island]
        if not ranked:
            raise ValueError(f"island {island} has no valid program to breed from (was the seed invalid?)")
        rule = self.settings.selection
        if rule == "hill_climb":
            index = 0
        elif rule == "weighted":
            index = weighted_index(self._rng, [-s for s, _ in ranked], [self._children[i] for _, i in ranked])
        else:
            index = self._power_law.sample(self._rng, len(ranked))
        return self._all[ranked[index][1]]

    def pick_mate(self, parent: Candidate, island: int) -> Candidate | None:
        """A second parent for a crossover: another island's best or a Pareto member, with code
        different from `parent`'s; None when there is none."""
        pool = {c.id: c for c in self._diverse_pool(island) if c.code_hash != parent.code_hash}
        return self._rng.choice([pool[i] for i in sorted(pool)]) if pool else None

    def common_ancestor(self, a: int, b: int) -> Candidate:
        """The nearest candidate both descend from (the merge base of a crossover)."""
        ours = self._ancestors(a)
        frontier, seen = [b], {b}
        while frontier:  # breadth first from b: the first ancestor of a met is the nearest
            for node in frontier:
                if node in ours:
                    return self._all[node]
            frontier = [p for node in frontier for p in self._all[node].parent_ids if p not in seen]
            seen.update(frontier)
        raise ValueError(f"candidates {a} and {b} share no ancestor")

    def inspirations(self, parent: Candidate, island: int) -> list[Candidate]:
        """Programs to show beside the parent: the island's top `num_inspirations`, then
        `num_diverse` drawn from other islands' bests and the Pareto archive. Never the parent,
        nor a program with the parent's (or an already chosen one's) code."""
        chosen: list[Candidate] = []
        hashes = {parent.code_hash}

        def take(candidate: Candidate) -> None:
            if candidate.id != parent.id and candidate.code_hash not in hashes:
                chosen.append(candidate)
                hashes.add(candidate.code_hash)

        for _, cid in self._ranked[island]:
            if len(chosen) >= self.settings.num_inspirations:
                break
            take(self._all[cid])
        taken = {c.id for c in chosen}
        pool = {c.id: c for c in self._diverse_pool(island)
                if c.id not in taken and c.id != parent.id and c.code_hash not in hashes}
        picks = self._rng.sample(sorted(pool), min(self.settings.num_diverse, len(pool)))
        for cid in picks:
            take(pool[cid])
        return chosen

    def _diverse_pool(self, island: int) -> list[Candidate]:
        others = [self.island_best(i) for i in range(self.settings.islands) if i != island]
        return [c for c in others if c is not None] + self._pareto.members

    def recent_failures(self, candidate_id: int, k: int) -> list[Candidate]:
        """Up to k invalid candidates, newest first: children of this lineage (the candidate and
        its ancestors), then, if fewer, other failures on the candidate's island."""
        lineage = self._ancestors(candidate_id)
        island = self._all[candidate_id].island
        own = [f for f in reversed(self._failures) if lineage.intersection(f.parent_ids)][:k]
        if len(own) < k:
            ids = {f.id for f in own}
            own += [f for f in reversed(self._failures) if f.island == island and f.id not in ids]
        return own[:k]

    def _ancestors(self, candidate_id: int) -> set[int]:
        found, stack = {candidate_id}, [candidate_id]
        while stack:
            for parent in self._all[stack.pop()].parent_ids:
                if parent not in found:
                    found.add(parent)
                    stack.append(parent)
        return found

    # -- looking up ------------------------------------------------------------------------
    def seen(self, code_hash: str) -> Candidate | None:
        """The candidate already evaluated with this normalised code, if any (never evaluate twice)."""
        return self._by_hash.get(code_hash)

    def get(self, candidate_id: int) -> Candidate:
        return self._all[candidate_id]

    def __len__(self) -> int:
        return len(self._all)

    def island_best(self, island: int) -> Candidate | None:
        ranked = self._ranked[island]
        return self._all[ranked[0][1]] if ranked else None

    def island_members(self, island: int) -> list[Candidate]:
        """Valid members (migrants included), best first."""
        return [self._all[cid] for _, cid in self._ranked[island]]

    def best(self) -> Candidate | None:
        """The best valid candidate of the run, by the one ranking rule (`candidate.rank_key`)."""
        return best_of(filter(None, map(self.island_best, range(self.settings.islands))))

    def pareto_front(self) -> list[Candidate]:
        return self._pareto.members

"""Harness overhead per candidate on the store + population path, with 500 candidates already in.

Measures what the controller does for every evaluated candidate besides proposing and
evaluating it: `population.add`, `store.commit` (Git objects, candidate ref, fsync'd journal
line), moving the island branch / `best` tag, then `pick_parent` + `inspirations` for the next
attempt. Prints the median per candidate in ms against the 50 ms budget for all harness
overhead (target here: < 20 ms). Wall time includes waiting for the disk (the journal line is
synced); the CPU time beside it shows what the code itself costs on a busy machine.

    .venv/bin/python bench/bench_population.py [--candidates 500] [--measure 200]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from candidate_factory import candidate  # noqa: E402

from harness.config.settings import PopulationSettings  # noqa: E402
from harness.search.population import Population  # noqa: E402
from harness.store.candidate import code_hash  # noqa: E402
from harness.store.run_store import RunStore  # noqa: E402

SEED_CODE = (ROOT / "seed_program" / "eplb.py").read_text()


def variant(i: int) -> str:
    """The seed program with a small, real change, as an edit would make."""
    return SEED_CODE + f"\n\n_TUNING = {i}  # variant {i}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=500, help="population size before measuring")
    parser.add_argument("--measure", type=int, default=200, help="candidates timed after that")
    args = parser.parse_args()
    rng = random.Random(0)
    settings = PopulationSettings(islands=4, migration_interval=20)
    steps: dict[str, list[float]] = {"population.add": [], "store.commit": [], "set_best + island head": [],
                                     "pick_parent + inspirations": []}
    hashing: list[float] = []
    cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create(Path(tmp) / "run", "", candidate(0, code=variant(0)))
        pop = Population(settings, rng)
        pop.add(store.load_candidates()[0])
        island, parent = 0, pop.get(0)
        for i in range(1, args.candidates + args.measure + 1):
            timed = i > args.candidates
            code = variant(i)
            start = time.perf_counter()
            digest = code_hash(code)
            hashing.append(time.perf_counter() - start)
            child = replace(candidate(i, (parent.id,), score=rng.random(), island=island, code=code,
                                      valid=rng.random() < 0.8), code_hash=digest)
            cpu_start = time.process_time()
            marks = [time.perf_counter()]
            committed = store.commit(child, {"calls": [], "blocks": []})
            marks.append(time.perf_counter())
            pop.add(committed)
            marks.append(time.perf_counter())
            store.set_best(pop.best())
            store.set_island_head(island, pop.island_best(island))
            marks.append(time.perf_counter())
            island = pop.island_for(i + 1)
            parent = pop.pick_parent(island)
            pop.inspirations(parent, island)
            marks.append(time.perf_counter())
            cpu.append(time.process_time() - cpu_start)
            if timed:
                for name, begin, end in zip(("store.commit", "population.add", "set_best + island head",
                                             "pick_parent + inspirations"), marks, marks[1:]):
                    steps[name].append(end - begin)
        store.close()
    totals = [sum(parts) for parts in zip(*steps.values())]
    print(f"store + population path per candidate, {args.candidates} candidates in the population, "
          f"median of {args.measure}:")
    for name, values in steps.items():
        print(f"  {name:<28} {statistics.median(values) * 1e3:7.3f} ms")
    median_total = statistics.median(totals) * 1e3
    p90_total = statistics.quantiles(totals, n=10)[-1] * 1e3
    print(f"  {'total':<28} {median_total:7.3f} ms   (p90 {p90_total:.3f} ms; budget for all harness "
          f"overhead 50 ms, target here < 20 ms)")
    print(f"  {'total CPU time':<28} {statistics.median(cpu[-args.measure:]) * 1e3:7.3f} ms")
    print(f"  {'(code_hash, once per child)':<28} {statistics.median(hashing[-args.measure:]) * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()

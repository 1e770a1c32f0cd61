"""Diff-engine speed: parse + apply of a 10-block reply to a 1,000-line program, target <= 10 ms.

The case is built deterministically: a program of numbered helper functions inside an EVOLVE
block, and a reply whose ten SEARCH/REPLACE blocks each change one helper. Timed end to end
(parse_response + apply_edits, guard rails included) with time.perf_counter over many runs; the
median is checked against the target. Also reported, without a target: a parent seen for the first
time (its compiled facts are not cached yet), a reply with one indentation-shifted block, a reply
whose block misses (the nearest-region search on the whole program), and the cost of compile() on
the result alone: the syntax guard's floor, which no cleverness in matching can remove.

    .venv/bin/python bench/bench_patch.py [--runs 200]
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.diff.patch import apply_edits  # noqa: E402
from harness.diff.response import parse_response  # noqa: E402

TARGET_MS = 10.0
PROGRAM_LINES = 1000
BLOCKS = 10

# One helper: code of the density real EPLB programs have (docstring, comments, vector steps); the
# bench prints compile() time per line of the whole program next to the seed program's, to show it.
_HELPER = '''def place_{i}(weight, num_packs, limit={limit}):
    """Variant {i} of a greedy placement: heaviest items first, each into the lightest open pack.

    Packs that already hold `limit` items cost {penalty} times their load, so later items avoid
    them; afterwards loads above {cap} of the mean are pulled halfway back towards it, which keeps
    one hot pack from dominating the layer.

    Returns the pack of every item and its rank inside that pack.
    """
    num_layers, num_items = weight.shape
    # Heaviest first: a stable sort keeps ties in index order, so runs are reproducible.
    order = weight.float().sort(dim=-1, descending=True, stable=True).indices
    pack_of = torch.full((num_layers, num_items), -1, dtype=torch.int64)
    rank_of = torch.full_like(pack_of, -1)
    loads = torch.zeros(num_layers, num_packs)

    # Greedy pass: one Python loop per layer; the choice of pack is a vector operation.
    for layer in range(num_layers):
        counts = torch.zeros(num_packs, dtype=torch.int64)
        for item in order[layer].tolist():
            # Full packs are made expensive rather than excluded, so a pack is always found.
            cost = loads[layer].clone()
            cost[counts >= limit] *= {penalty}
            target = int(cost.argmin())
            pack_of[layer, item] = target
            rank_of[layer, item] = int(counts[target])
            loads[layer, target] += weight[layer, item]
            counts[target] += 1

    # Smoothing pass: loads far above the mean are pulled back towards it.
    mean = loads.mean(dim=-1, keepdim=True)
    ratio = loads / mean.clamp(min=1e-9)
    hot = ratio > {cap}
    if hot.any():
        # Halfway back: a full reset would hide the imbalance from the next window.
        loads = torch.where(hot, mean * ({cap} + (ratio - {cap}) * 0.5), loads)
    return pack_of, rank_of


'''


def build_program(lines: int = PROGRAM_LINES) -> str:
    """Whole helpers inside one EVOLVE block, padded with comment lines to exactly `lines` lines."""
    head = ["import torch\n", "\n", "# EVOLVE-BLOCK-START\n"]
    tail = ["def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):\n",
            "    return place_0(weight, num_gpus)\n", "# EVOLVE-BLOCK-END\n"]
    body: list[str] = []
    for i in itertools.count():
        helper = _helper(i).splitlines(keepends=True)
        if len(head) + len(body) + len(helper) + len(tail) > lines:
            break
        body.extend(helper)
    body.extend(["# (padding to the target size)\n"] * (lines - len(head) - len(body) - len(tail)))
    return "".join(head + body + tail)


def _helper(i: int) -> str:
    return _HELPER.format(i=i, limit=2 + i % 5, penalty=1.5 + i / 100, cap=round(0.9 + i / 1000, 3))


def build_reply(program: str, blocks: int = BLOCKS, dedent_first: bool = False, typo_first: bool = False) -> str:
    """A reply whose blocks each double one helper's penalty; SEARCH quotes five lines of the helper.
    The first block can be quoted 4 spaces too shallow (a tolerant match) or with a typo (a miss)."""
    parts = ["Raise the penalties.\n\n<NAME>raise_penalties</NAME>\n"
             "<DESCRIPTION>Bigger penalties.</DESCRIPTION>\n<DIFF>\n"]
    helpers = program.count("def place_")
    for n in range(blocks):
        lines = _helper(n * helpers // blocks).splitlines(keepends=True)
        at = next(k for k, line in enumerate(lines) if "cost = loads[layer].clone()" in line)
        search = "".join(lines[at:at + 5])
        replace = search.replace("] *= ", "] *= 2 * ")
        if n == 0 and dedent_first:
            search, replace = textwrap.dedent(search), textwrap.dedent(replace)
        if n == 0 and typo_first:
            search = search.replace("counts >= limit", "counts > limit")
        parts.append(f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n")
    return "".join(parts) + "</DIFF>\n"


def time_ms(step: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return times


def time_interleaved(cases: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Each case once per round, round after round, so that a busy spell on a shared machine slows
    every case alike instead of whichever happened to be running."""
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(runs):
        for label, step in cases.items():
            times[label].extend(time_ms(step, 1))
    return {label: sorted(values) for label, values in times.items()}


def compile_us_per_line(source: str, runs: int) -> float:
    """Best-of-runs compile() time per line: how heavy a program is for the syntax guard."""
    best_ms = min(time_ms(lambda: compile(source, "<program>", "exec", dont_inherit=True), runs))
    return best_ms * 1000 / source.count("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    program = build_program()
    reply = build_reply(program)
    shifted, missed = build_reply(program, dedent_first=True), build_reply(program, typo_first=True)
    exact, tolerant, miss = (apply_edits(program, parse_response(text)) for text in (reply, shifted, missed))
    assert exact.ok and [o.status for o in exact.outcomes] == ["exact"] * BLOCKS, exact.summary()
    assert tolerant.ok and tolerant.outcomes[0].status == "tolerant", tolerant.summary()
    assert not miss.ok and "nearest program region" in (miss.error or ""), miss.summary()

    variants = itertools.count()  # a parent never seen before on each run: nothing cached
    cases = {
        "all exact (headline)": lambda: apply_edits(program, parse_response(reply)),
        "all exact, first sight of the parent": lambda: apply_edits(f"{program}# variant {next(variants)}\n",
                                                                    parse_response(reply)),
        "block 1 indentation-shifted": lambda: apply_edits(program, parse_response(shifted)),
        "block 1 misses (nearest-region search)": lambda: apply_edits(program, parse_response(missed)),
        "parse only": lambda: parse_response(reply),
        "compile() of the result alone (guard floor)": lambda: compile(exact.text or "", "<program>", "exec",
                                                                       dont_inherit=True),
    }
    print(f"program: {program.count(chr(10))} lines; reply: {BLOCKS} blocks, {reply.count(chr(10))} lines; "
          f"{args.runs} runs each; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    seed = (ROOT / "seed_program" / "eplb.py").read_text()
    print(f"compile() per line, best of {args.runs}: this program {compile_us_per_line(program, args.runs):.1f} us, "
          f"seed_program/eplb.py {compile_us_per_line(seed, args.runs):.1f} us")
    timings = time_interleaved(cases, args.runs)
    for label, times in timings.items():
        p90 = times[int(0.9 * len(times))]
        print(f"  {label:<44} median {statistics.median(times):6.2f} ms   min {times[0]:6.2f}   p90 {p90:6.2f}")
    print(f"miss message: {miss.error}")
    headline = statistics.median(timings["all exact (headline)"])
    verdict = "PASS" if headline <= TARGET_MS else "FAIL"
    print(f"{verdict}: parse + apply of {BLOCKS} exact blocks to a {PROGRAM_LINES}-line program: "
          f"median {headline:.2f} ms (target <= {TARGET_MS:.0f} ms)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

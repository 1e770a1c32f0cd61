"""Generate the built-in suites' published windows (evaluator/workloads/windows/*.npz) from the generator.

The built-in suites read their windows from these files so that every machine scores the same
loads (evaluator/workloads/published.py says why). Run this only when the generator, its
parameters or the suites' window counts change on purpose: it rewrites the files from this
machine's NumPy, and every score made on the old windows stops being comparable. Then update
the digests in tests/unit/test_scenarios.py (printed here) and the tables in docs/workloads.md.

    .venv/bin/python bench/make_published_windows.py

Prints each file with its size, and the windows digest of every built-in scenario.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.workloads import published  # noqa: E402
from evaluator.workloads.scenarios import published_workloads, suite, suite_names  # noqa: E402


def main() -> None:
    total = 0
    for key, source in published_workloads().items():
        path = published.save(key, source.base(), source.search(), source.heldout())
        size = path.stat().st_size
        total += size
        print(f"{path.relative_to(ROOT)}: {source.num_search} search + {source.num_heldout} held-out windows of "
              f"{source.num_layers} x {source.num_experts}, {size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB")
    for name in suite_names():
        for scenario in suite(name):
            print(f"  ({name!r}, {scenario.name!r}): ({scenario.windows_digest(False)!r}, "
                  f"{scenario.windows_digest(True)!r}),")


if __name__ == "__main__":
    main()

"""Fixed cost of the sandbox: per candidate (start + one tiny call + close) and per call.

    python bench/bench_sandbox.py [--sandbox auto|process|bwrap] [--candidates 20] [--calls 200]

Prints the fork server's one-off start time, the median and 90th percentile of a candidate's
fixed cost, the median round trip of a no-op call and its overhead over the runtime the child
reports, and PASS/FAIL against the 0.5 s budget per candidate. The program is a no-op that returns
three small tensors, so every figure is the sandbox's own cost.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from evaluator.sandbox import isolation, servers  # noqa: E402
from evaluator.sandbox.candidate_process import CandidateProcess, Limits  # noqa: E402

BUDGET_S = 0.5
NO_OP = '''
import torch
_ANSWER = (torch.zeros(4, 24, dtype=torch.int64), torch.zeros(4, 16, 2, dtype=torch.int64),
           torch.ones(4, 16, dtype=torch.int64))


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return _ANSWER
'''


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", default="auto", choices=["auto", "process", "bwrap"])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    limits = Limits(sandbox=isolation.resolve_sandbox(options.sandbox))
    window = torch.rand(4, 16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "no_op.py"
        path.write_text(NO_OP)
        began = time.perf_counter()
        servers.server_for(limits.sandbox)
        server_start = time.perf_counter() - began
        fixed = []
        for _ in range(options.candidates):
            began = time.perf_counter()
            with CandidateProcess(path, limits) as candidate:
                candidate.start()
                candidate.call(window, 24, 4, 1, 4)
            fixed.append(time.perf_counter() - began)
        trips, gaps = [], []
        with CandidateProcess(path, limits) as candidate:
            candidate.start()
            for _ in range(options.calls):
                result = candidate.call(window, 24, 4, 1, 4)
                trips.append(result.round_trip_s)
                gaps.append(result.round_trip_s - result.runtime_s)
    median = statistics.median(fixed)
    print(f"sandbox              {limits.sandbox}")
    print(f"fork server start    {server_start * 1000:8.1f} ms (once per evaluator process)")
    print(f"per candidate        median {median * 1000:7.1f} ms, p90 "
          f"{_percentile(fixed, 0.9) * 1000:7.1f} ms  (start + 1 call + close, "
          f"{options.candidates} candidates)")
    print(f"no-op call           median round trip {statistics.median(trips) * 1000:7.3f} ms, "
          f"overhead over the child's figure median {statistics.median(gaps) * 1000:7.3f} ms, "
          f"max {max(gaps) * 1000:7.3f} ms  ({options.calls} calls)")
    verdict = "PASS" if median <= BUDGET_S else "FAIL"
    print(f"{verdict}: median fixed cost per candidate {median:.3f} s vs budget {BUDGET_S} s")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

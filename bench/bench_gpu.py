"""The evaluator on a CUDA device: scores, timings and runtime noise where candidates meet a GPU.

Needs a CUDA device (prints a notice and exits 0 without one). Figures, each from `evaluate()` as
`eplb-evolve eval --device ...` runs it:

1. The seed on the `default` suite with --device cuda and --device cpu: wall time, runtime and
   balancedness; the per-window balancedness must be identical (the placement does not depend on
   where the input tensor lives).
2. GPU-resident candidates: the vectorised seed (evaluator/baselines/vectorized_seed.py) as
   shipped (copies the window to the CPU and computes there) and the same code computing on the
   input's device (written out with the `.cpu()` dropped and the factory functions bound to the
   input's device): runtime of each on the GPU, whether the placements still match the seed's.
3. Runtime noise: --repeats evaluations of the seed on `quick`, per device: runtime_ms and the
   coefficient of variation (issue 2's target: <= 5%).

    python bench/bench_gpu.py [--repeats 5] [--skip-default]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evaluator.baselines import vectorized_seed  # noqa: E402
from evaluator.evaluate import EvalOptions, evaluate  # noqa: E402
from evaluator.records import Evaluation  # noqa: E402
from evaluator.scoring import metrics  # noqa: E402
from evaluator.workloads.scenarios import suite  # noqa: E402
from seed_program import SEED_PATH  # noqa: E402

ON_INPUT_DEVICE = '''

_computed_on_the_cpu = rebalance_experts


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """The same policy, every tensor created on the input's device."""
    with torch.device(weight.device):
        return _computed_on_the_cpu(weight, num_replicas, num_groups, num_nodes, num_gpus)
'''


def gpu_resident_vectorized_seed(folder: Path) -> Path:
    """vectorized_seed.py rewritten to compute where its input is (the GPU under --device cuda)."""
    source = Path(vectorized_seed.__file__).read_text()
    moved = "weight = weight.detach().float().cpu()"
    if moved not in source:
        raise SystemExit(f"{vectorized_seed.__file__} no longer contains {moved!r}; update this bench")
    path = folder / "vectorized_seed_on_device.py"
    path.write_text(source.replace(moved, "weight = weight.detach().float()") + ON_INPUT_DEVICE)
    return path


def timed(program: Path, suite_name: str, device: str) -> Evaluation:
    began = time.perf_counter()
    result = evaluate(program, suite(suite_name), suite_name, EvalOptions(device=device))
    wall = time.perf_counter() - began
    state = "valid" if result.valid else f"INVALID: {result.error}"
    print(f"  {program.name:<28} {device:<5} {suite_name:<8} wall {wall:6.1f} s  "
          + (f"balancedness {result.balancedness:.4f}  runtime {result.runtime_ms:8.2f} ms  " if result.valid else "")
          + state, flush=True)
    return result


def per_window(result: Evaluation) -> list[float]:
    return [w.balancedness for s in result.scenarios for w in s.windows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="evaluations per device for the noise figure")
    parser.add_argument("--skip-default", action="store_true", help="only the quick-suite figures")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure")
        return 0
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ok = True
    suite_name = "quick" if args.skip_default else "default"
    print(f"1. seed on {suite_name}, cuda vs cpu")
    on_gpu, on_cpu = timed(SEED_PATH, suite_name, "cuda"), timed(SEED_PATH, suite_name, "cpu")
    same = on_gpu.valid and on_cpu.valid and per_window(on_gpu) == per_window(on_cpu)
    ok &= same
    print(f"  per-window balancedness identical on both devices: {same}")

    print(f"2. GPU-resident candidates on {suite_name}, --device cuda")
    with tempfile.TemporaryDirectory() as folder:
        shipped = timed(Path(vectorized_seed.__file__), suite_name, "cuda")
        resident = timed(gpu_resident_vectorized_seed(Path(folder)), suite_name, "cuda")
    for label, result in (("shipped (CPU compute)", shipped), ("on the GPU", resident)):
        if result.valid:
            print(f"  vectorised seed, {label}: speedup over the seed {on_gpu.runtime_ms / result.runtime_ms:.1f}x, "
                  f"placements as the seed's: {per_window(result) == per_window(on_gpu)}")
        ok &= result.valid

    print(f"3. runtime noise, seed on quick x{args.repeats}")
    for device in ("cuda", "cpu"):
        runs = [timed(SEED_PATH, "quick", device) for _ in range(args.repeats)]
        runtimes, raw = [r.runtime_ms for r in runs], [r.runtime_ms_raw for r in runs]
        cv, raw_cv = metrics.coefficient_of_variation(runtimes), metrics.coefficient_of_variation(raw)
        ok &= cv <= 0.05
        print(f"  {device}: runtime_ms {', '.join(f'{x:.1f}' for x in runtimes)}; CV {cv * 100:.2f}% "
              f"[target <= 5%] {'PASS' if cv <= 0.05 else 'FAIL'}; wall clock CV {raw_cv * 100:.2f}%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

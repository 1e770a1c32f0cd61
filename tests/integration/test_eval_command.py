"""`eplb-evolve eval`: exit codes, error lines, JSON fields, determinism, through the real CLI."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from paths import REPO

SEED = REPO / "seed_program" / "eplb.py"
# 16 experts match no known model: the model's own cost-model constants come with the trace.
MODEL_FLAGS = ["--deployment", "hidden_size=1024", "--deployment", "moe_intermediate_size=512",
               "--deployment", "experts_per_token=2", "--deployment", "groups_per_token=2"]
SHAPE_FLAGS = ["--window-steps", "2", "--replicas", "24", "--groups", "4", "--nodes", "1", "--gpus", "4", *MODEL_FLAGS]
JSON_FIELDS = {"valid", "error", "combined_score", "balancedness", "balancedness_slot", "runtime_ms",
               "speedup_vs_seed", "device", "sandbox", "feedback", "scenarios", "deployment", "fresh_balancedness",
               "objective"}
DEPLOYMENT_FIELDS = {"efficiency", "migrated_fraction", "nodes_per_token", "modelled_ms"}


def eplb(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    """A small ADRS-format trace: 20 steps of 4 layers x 16 experts, skewed loads."""
    rng = random.Random(7)
    steps = [{"logical_expert_load": [[int(rng.paretovariate(1.2) * 10) for _ in range(16)] for _ in range(4)]}
             for _ in range(20)]
    path = tmp_path_factory.mktemp("trace") / "trace.json"
    path.write_text(json.dumps({"load_history": steps}))
    return path


def _program(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(SEED.read_text() + "\n" + body)
    return path


def test_valid_program_prints_json_with_every_field_and_exits_0(trace, tmp_path):
    result = eplb("eval", str(SEED), "--trace", str(trace), *SHAPE_FLAGS, "--json", cache=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert JSON_FIELDS <= data.keys()
    assert data["valid"] is True and data["error"] is None
    assert data["speedup_vs_seed"] == 1.0  # the seed against itself
    assert 0 < data["balancedness"] <= 1 and 0 < data["combined_score"] <= data["balancedness"]
    [scenario] = data["scenarios"]
    assert len(scenario["windows"]) == 7  # 10 windows, 2 held out, 8 for search -> 7 scored placements
    assert "balancedness" in data["feedback"]
    assert data["objective"] == "efficiency" and data["fresh_balancedness"] is None  # a trace has no generator
    for level in (data, scenario, scenario["windows"][-1]):
        assert level["deployment"].keys() == DEPLOYMENT_FIELDS
        assert 0 < level["deployment"]["efficiency"] <= 1
        assert level["deployment"]["modelled_ms"].keys() == {"compute", "communication", "migration", "ideal"}
    assert data["combined_score"] <= data["deployment"]["efficiency"]


def test_runtimes_are_normalised_by_the_yardstick_unless_wall_clock_is_asked_for(trace, tmp_path):
    runs = {timing: json.loads(eplb("eval", str(SEED), "--trace", str(trace), *SHAPE_FLAGS, "--json",
                                    "--no-speedup", "--timing", timing, cache=tmp_path).stdout)
            for timing in ("normalised", "wall")}
    normalised, wall = runs["normalised"], runs["wall"]
    reference = normalised["timing_reference_ms"]
    assert reference > 0 and wall["timing_reference_ms"] is None
    for w in normalised["scenarios"][0]["windows"]:
        assert w["runtime_ms"] == pytest.approx(w["runtime_ms_raw"] * reference / w["yardstick_ms"])
    for w in wall["scenarios"][0]["windows"]:
        assert w["runtime_ms"] == w["runtime_ms_raw"] and w["yardstick_ms"] is None
    assert wall["runtime_ms"] == wall["runtime_ms_raw"]
    assert (tmp_path / "eplb-evolve" / "yardstick.json").is_file()  # calibrated once, cached


@pytest.fixture(scope="module")
def search_run(trace, tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    return json.loads(eplb("eval", str(SEED), "--trace", str(trace), *SHAPE_FLAGS, "--json", "--no-speedup",
                           cache=cache).stdout)


def test_scores_are_identical_across_repeated_evaluations(trace, search_run, tmp_path):
    again = json.loads(eplb("eval", str(SEED), "--trace", str(trace), *SHAPE_FLAGS, "--json", "--no-speedup",
                            cache=tmp_path).stdout)
    assert [w["balancedness"] for w in again["scenarios"][0]["windows"]] == \
           [w["balancedness"] for w in search_run["scenarios"][0]["windows"]]
    assert again["balancedness_slot"] == search_run["balancedness_slot"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_evaluation_scores_like_the_cpu_one_and_auto_picks_the_gpu(trace, tmp_path):
    runs = {device: json.loads(eplb("eval", str(SEED), "--trace", str(trace), *SHAPE_FLAGS, "--json",
                                    "--no-speedup", "--device", device, cache=tmp_path).stdout)
            for device in ("auto", "cpu")}
    assert runs["auto"]["valid"] and runs["auto"]["device"] == "cuda" and runs["cpu"]["device"] == "cpu"
    assert [w["balancedness"] for w in runs["auto"]["scenarios"][0]["windows"]] == \
           [w["balancedness"] for w in runs["cpu"]["scenarios"][0]["windows"]]


def test_heldout_windows_differ_from_search_windows(trace, search_run, tmp_path):
    held = json.loads(eplb("eval", str(SEED), "--trace", str(trace), *SHAPE_FLAGS, "--json", "--no-speedup",
                           "--heldout", cache=tmp_path).stdout)
    assert held["heldout"] is True and len(held["scenarios"][0]["windows"]) == 1
    assert held["balancedness"] != search_run["balancedness"]


def test_invalid_program_still_prints_json_and_exits_1(trace, tmp_path):
    liar = _program(tmp_path, "liar.py", (
        "_honest = rebalance_experts\n\n"
        "def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):\n"
        "    phy2log, log2phy, logcnt = _honest(weight, num_replicas, num_groups, num_nodes, num_gpus)\n"
        "    logcnt[0, 0] += 1  # over-claim a replica\n"
        "    return phy2log, log2phy, logcnt\n"))
    result = eplb("eval", str(liar), "--trace", str(trace), *SHAPE_FLAGS, "--json", "--no-speedup", cache=tmp_path)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["combined_score"] == 0.0
    assert "warm-up call: logcnt[0, 0]" in data["error"]
    assert data["feedback"].startswith("INVALID: ")


def test_table_output_names_scenarios_and_validity(trace, tmp_path):
    result = eplb("eval", str(SEED), "--trace", str(trace), *SHAPE_FLAGS, "--no-speedup", cache=tmp_path)
    assert result.returncode == 0
    assert "trace" in result.stdout and "valid: yes" in result.stdout and "GPU bal" in result.stdout
    assert "efficiency" in result.stdout and "nodes/tok" in result.stdout
    # The constants in force are printed, the window length being the trace's own.
    (said,) = [line for line in result.stderr.splitlines() if "deployment constants" in line]
    assert "hidden_size=1024" in said and "steps_per_window=2" in said and "internode_bytes_per_s=50000000000.0" in said


@pytest.mark.parametrize("make_args, message", [
    (lambda t, p: ["eval", str(p / "missing.py")], "no such program file"),
    (lambda t, p: ["eval", str(_program(p, "x.py", "del rebalance_experts\n").with_name("none.py"))],
     "no such program file"),
    (lambda t, p: ["eval", str(_write(p / "empty.py", "import torch\n"))], "defines no top-level rebalance_experts"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(_write(p / "bad.json", "{not json")), *SHAPE_FLAGS],
     "bad.json"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(p / "absent.json"), *SHAPE_FLAGS], "absent.json"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(t), "--replicas", "25", "--gpus", "4"], "25"),
    (lambda t, p: ["eval", str(SEED), "--suite", "nope"], "nope"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(t), *SHAPE_FLAGS[:10]],
     "16 experts per layer matches no known model; set the deployment constants hidden_size"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(t), *SHAPE_FLAGS, "--deployment", "internode_bytes_per_s=0"],
     "internode_bytes_per_s"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(t), *SHAPE_FLAGS, "--deployment", "hidden_size=-4"],
     "hidden_size"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(t), *SHAPE_FLAGS, "--deployment", "hiddensize=4"],
     "unknown deployment constant hiddensize"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(t), *SHAPE_FLAGS, "--deployment", "hidden_size"],
     "expected KEY=NUMBER"),
    (lambda t, p: ["eval", str(SEED), "--suite", "quick", "--deployment", "hidden_size=4"], "--trace"),
    (lambda t, p: ["eval", str(SEED), "--run", "nope", "--runs-dir", str(p)], "nope"),
    (lambda t, p: ["eval", str(SEED), "--trace", str(t), *SHAPE_FLAGS, "--run", "r"], "--trace and --run"),
])
def test_user_mistakes_are_one_line_and_exit_2(trace, tmp_path, make_args, message):
    result = eplb(*make_args(trace, tmp_path), cache=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="asking for CUDA is a mistake only where there is none")
def test_asking_for_cuda_without_a_gpu_is_one_line_naming_the_flag(tmp_path):
    result = eplb("eval", str(SEED), "--suite", "quick", "--device", "cuda", cache=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "eplb-evolve: error: --device cuda: no CUDA device is visible here; use cpu or auto")

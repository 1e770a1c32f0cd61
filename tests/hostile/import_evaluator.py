# prepend: honest.py
"""Tries to import the evaluator's and harness's own packages -- evaluator.workloads.scenarios would
regenerate the very windows it is scored on -- first plainly, then after resetting the import
system to Python's own finders and putting back on sys.path the folder the child's own code came
from (found through a live function of the child). Checks that torch, numpy and the standard library
still import, modules not loaded yet among them. Prints IMPORTS=<json> and answers correctly.

Expected: every plain import of evaluator or harness fails; in bwrap the second route fails too
(their files are not in view); torch, numpy and the standard library import.
"""
import gc
import importlib
import json
import os
import sys
import types

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
OURS = ("evaluator.workloads.scenarios", "harness", "evaluator")
THEIRS = ("torch", "numpy", "sqlite3", "zoneinfo", "torch.utils.benchmark")


def _try(name):
    try:
        importlib.import_module(name)
        return "ok"
    except BaseException as exc:  # noqa: BLE001
        return type(exc).__name__


def _repo_root():
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith("evaluator."):
            return os.path.dirname(os.path.dirname(os.path.dirname(obj.__code__.co_filename)))
    return None


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    facts = {name: _try(name) for name in OURS + THEIRS}
    root = _repo_root()
    facts["root"] = root
    if root:
        sys.meta_path[:] = [f for f in sys.meta_path
                            if getattr(f, "__module__", "").startswith("_frozen_importlib")]
        sys.path.insert(0, root)
        sys.path_importer_cache.clear()
        facts["by_path"] = _try("evaluator.workloads.scenarios")
    print("IMPORTS=" + json.dumps(facts), flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)

"""Builds Candidates and Evaluations for the store and population tests (and the benchmark)."""
from __future__ import annotations

from evaluator.records import Evaluation
from harness.store.candidate import Candidate, code_hash
from harness.store.status import Status


def evaluation(score: float, balancedness: float | None = None, runtime_ms: float = 5.0) -> Evaluation:
    return Evaluation(valid=True, error=None, combined_score=score,
                      balancedness=score if balancedness is None else balancedness,
                      balancedness_slot=0.3, balancedness_insample=0.95, bound_gap=0.1,
                      runtime_ms=runtime_ms, speedup_vs_seed=1.0, device="cpu", sandbox="process",
                      suite="quick", heldout=False, feedback="")


def failed(error: str = "window 3: logcnt does not sum to num_replicas") -> Evaluation:
    return Evaluation.invalid(error, "traceback...", device="cpu", sandbox="process", suite="quick",
                              heldout=False)


def candidate(cid: int, parents: tuple[int, ...] = (), *, score: float = 0.5, island: int = 0,
              code: str | None = None, valid: bool = True, balancedness: float | None = None,
              runtime_ms: float = 5.0, iteration: int | None = None) -> Candidate:
    """Candidate `cid`; its code defaults to a program unique to the id."""
    code = code if code is not None else f"def rebalance_experts(w):\n    return {cid}\n"
    ev = evaluation(score, balancedness, runtime_ms) if valid else failed()
    return Candidate(id=cid, parent_ids=parents, island=island, name=f"variant_{cid}",
                     description=f"Variant {cid}.", code=code, code_hash=code_hash(code),
                     status=Status.VALID if valid else Status.INVALID, evaluation=ev, model="test-model",
                     prompt_tokens=100 + cid, completion_tokens=50, cost=0.001 * cid,
                     iteration=cid if iteration is None else iteration, created_at=1_700_000_000.0 + cid)

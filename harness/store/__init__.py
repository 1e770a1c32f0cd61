"""The run directory: candidates as Git commits (gitpop), the attempt journal, artifacts, the run
lock and crash recovery (run_store), and the records they all persist (Candidate, Status)."""

from harness.store.candidate import Candidate, best_of, code_hash, metrics, rank_key, ranked
from harness.store.files import atomic_write
from harness.store.run_store import RunStore, resolve_run
from harness.store.status import Status

__all__ = ["Candidate", "best_of", "code_hash", "metrics", "rank_key", "ranked", "atomic_write", "RunStore",
           "resolve_run", "Status"]

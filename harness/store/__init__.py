"""The run directory: candidates as Git commits (gitpop), the attempt journal, artifacts, the run
lock and crash recovery (run_store), and the Candidate record they all persist."""

from harness.store.candidate import Candidate, code_hash, VALID, INVALID
from harness.store.run_store import RunStore, resolve_run

__all__ = ["Candidate", "code_hash", "VALID", "INVALID", "RunStore", "resolve_run"]

"""Where evaluations run: pinned local worker processes (one slot per core set / GPU) or Ray tasks,
behind one `Evaluations` interface; retries a job once when its worker is lost."""

from harness.execution.executors import EvalJob, Evaluations, LocalExecutor, Suites, run_job
from harness.execution.local_slots import LocalEvaluations

__all__ = ["EvalJob", "Evaluations", "LocalExecutor", "Suites", "run_job", "LocalEvaluations"]

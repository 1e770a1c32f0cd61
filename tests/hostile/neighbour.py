# prepend: honest.py
"""One of two candidates running side by side. With __VICTIM__ empty it is the victim: it says its
pid and uid at import, then answers correctly. Otherwise it is the attacker: it SIGKILLs pid
__VICTIM__ (the victim, as its sandbox numbers pids) and says what happened, then answers
correctly. Prints NEIGHBOUR=<json>.

Expected: the two run under different uids, so the kill is refused and the victim lives on.
"""
import json
import os
import signal

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
VICTIM = "__VICTIM__"


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        return "killed"
    except OSError as exc:
        return type(exc).__name__


if not VICTIM:
    print("NEIGHBOUR=" + json.dumps({"pid": os.getpid(), "uid": os.getuid()}), flush=True)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if VICTIM:
        print("NEIGHBOUR=" + json.dumps({"uid": os.getuid(), "kill": _kill(int(VICTIM))}), flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)

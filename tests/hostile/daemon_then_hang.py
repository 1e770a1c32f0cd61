"""At import: prints its keeper's pid, leaves a setsid'ed double-forked daemon named __MARKER__;
then hangs in every call.

Expected: whichever way the evaluation ends (timeout, close, the keeper or the whole evaluator
being killed), no process named __MARKER__ survives.
"""
import os
import time

print(f"KEEPER={os.getppid()}", flush=True)
_first = os.fork()
if _first == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["__MARKER__", "1000"])
    os._exit(0)
os.waitpid(_first, 0)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    time.sleep(3600)

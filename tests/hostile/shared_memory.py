# prepend: honest.py
"""Keeps RAM outside its process, where a memory cap on the process does not look: first small files
left in /tmp, /var/tmp and /dev/shm (one in a folder of its own) named after __MARKER__ for a later
candidate to find, and __SYSV_MIB__ MiB of System V shared memory segments, filled and left behind
-- it prints SHM=<json>, what each attempt gave (the segments' ids) -- then __MIB__ MiB of files in
__HOG_DIR__ (a folder, or HOME for its home), after which it waits a second, prints SHM-WRITTEN and
answers correctly.

Expected: its files on tmpfs and its segment count against its memory cap (it is killed when they
pass it), and nothing it left is there after its evaluation.
"""
import ctypes
import json
import os
import time

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
CHUNK = b"\1" * (1 << 20)


def _leave(path):
    try:
        with open(path, "w") as f:
            f.write("left for a later candidate")
        return "ok"
    except OSError as exc:
        return type(exc).__name__


def _segments(mib):
    """System V segments of 16 MiB each, attached one at a time (its address space is capped)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    made = []
    for _ in range(mib // 16):
        shmid = libc.shmget(0, 16 << 20, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
        address = libc.shmat(shmid, None, 0) if shmid >= 0 else None
        if address in (None, ctypes.c_void_p(-1).value):
            return os.strerror(ctypes.get_errno())
        ctypes.memset(address, 1, 16 << 20)
        libc.shmdt(ctypes.c_void_p(address))
        made.append(shmid)
    return made


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    facts = {folder: _leave(f"{folder}/eplb-left-__MARKER__") for folder in ("/tmp", "/var/tmp", "/dev/shm")}
    facts["sysv"] = _segments(int("__SYSV_MIB__"))
    try:
        os.mkdir("/tmp/eplb-left-dir-__MARKER__")
        facts["nested"] = _leave("/tmp/eplb-left-dir-__MARKER__/inside")
    except OSError as exc:
        facts["nested"] = type(exc).__name__
    print("SHM=" + json.dumps(facts), flush=True)
    time.sleep(0.5)
    folder = os.environ["HOME"] if "__HOG_DIR__" == "HOME" else "__HOG_DIR__"
    for part in range(int("__MIB__") // 16):
        with open(f"{folder}/eplb-hog-__MARKER__-{part}", "wb") as f:
            for _ in range(16):
                f.write(CHUNK)
    time.sleep(1.0)
    print("SHM-WRITTEN", flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)

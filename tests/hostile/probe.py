# prepend: honest.py
"""Reports what the child can see and do as one JSON line after 'PROBE=' (the tests check it): uid,
capabilities, thread settings, HOME/TMPDIR/cwd, environment names, how many processes it can see, whether it can
read __READ_TARGET__, write next to __WRITE_TARGET__, write in /tmp and /dev/shm, and connect to
127.0.0.1:__PORT__. Then answers correctly.
"""
import json
import os
import socket

import torch

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def _attempt(action):
    try:
        action()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__


def _write(path):
    with open(path, "w") as f:
        f.write("written by a candidate")


def _read(path):
    with open(path) as f:
        f.read()


def _connect():
    with socket.create_connection(("127.0.0.1", int("__PORT__")), timeout=2):
        pass


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    facts = {
        "uid": os.getuid(),
        "caps": int(open("/proc/self/status").read().split("CapEff:")[1].split()[0], 16),
        "torch_threads": torch.get_num_threads(),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "processes": sum(1 for p in os.listdir("/proc") if p.isdigit()),
        "read_target": _attempt(lambda: _read("__READ_TARGET__")),
        "write_target": _attempt(lambda: _write("__WRITE_TARGET__")),
        "write_tmp": _attempt(lambda: _write("/tmp/eplb-probe-__MARKER__")),
        "write_shm": _attempt(lambda: _write("/dev/shm/eplb-probe-__MARKER__")),
        "write_home": _attempt(lambda: _write(os.path.join(os.environ["HOME"], "note"))),
        "connect": _attempt(_connect),
    }
    print("PROBE=" + json.dumps(facts), flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)

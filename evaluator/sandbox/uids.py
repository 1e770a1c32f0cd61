"""A uid of its own for every running candidate, when the evaluator runs as root.

Why not one shared uid (`nobody`): processes of one uid may signal and ptrace each other, share a
process-count limit (RLIMIT_NPROC counts per uid) and can read each other's files; with
`--workers N`, one candidate could SIGKILL another or starve it of processes. So each evaluation
claims a uid from a fixed range of CANDIDATE_UIDS that no passwd entry names, machine-wide, for as
long as its candidate runs: an flock on a lock file per uid in the evaluator's private lock folder
(evaluator.timing.cores.try_lock), released only after the keeper has killed every process of the
candidate and removed its files (keeper.py). No two running candidates, whichever evaluator process
or worker started them, ever share a uid. The gid is the same number, a group with no other member.

The range is the top of what this user namespace maps, below 2**31 (some tools read uids as signed
numbers) and, in a namespace that maps only 65536 ids, below nobody.
"""
from __future__ import annotations

import pwd

from evaluator.errors import UserError
from evaluator.timing.cores import try_lock

CANDIDATE_UIDS = 1024
_SIGNED_LIMIT = 2**31 - 1
_NOBODY = 65534


def candidate_uids() -> range:
    """The uids candidates run as here (see the module docstring)."""
    top = 0
    with open("/proc/self/uid_map") as mapping:
        for line in mapping:
            inside, _outside, count = (int(field) for field in line.split())
            top = max(top, inside + count)
    top = min(top, _SIGNED_LIMIT if top > _NOBODY + 1 else _NOBODY)
    return range(max(top - CANDIDATE_UIDS, 1), top)


def claim_uid() -> tuple[int, int]:
    """A free candidate uid and the lock descriptor that holds it (close it to release the uid)."""
    for uid in candidate_uids():
        try:
            pwd.getpwuid(uid)
            continue  # a real account: never hand its files and processes to a candidate
        except KeyError:
            pass
        fd = try_lock(f"uid{uid}.lock")
        if fd is not None:
            return uid, fd
    raise UserError(f"all {CANDIDATE_UIDS} candidate uids are in use by running evaluations; wait for "
                    "some to finish, or run fewer workers")

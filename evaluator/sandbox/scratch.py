"""What a candidate's uid leaves outside its process: files in the shared scratch folders and System V
shared memory. Used by the keeper, only when the candidate has a uid of its own (uids.py), so that
everything that uid owns is the candidate's.

Why: such things outlive the process, so they escape both its memory cap (600 MiB written to
/dev/shm under a 256 MiB cap were simply there) and its end (a later candidate could find them).
- While the candidate runs, `memory_bytes` counts what of it is held in RAM -- files on tmpfs
  (its HOME too, where that is tmpfs) and shared memory segments -- and the keeper adds it to the
  child's resident growth against the memory cap.
- When it has ended (every process of its uid killed), `sweep` removes its files from /tmp,
  /var/tmp and /dev/shm and its shared memory segments.

A candidate can only create an entry in a folder it may write to: its own folders, or folders
others may write to (the roots, and any world-writable folder below them). So the walk descends
into those alone, never follows a symbolic link, and treats a folder the uid owns as one entry
(counted or removed whole).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import stat
from collections.abc import Iterator

SCRATCH_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")
_IPC_RMID = 0
_libc = ctypes.CDLL(None, use_errno=True)


def owned_entries(uid: int, roots: tuple[str, ...]) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of every entry `uid` owns in `roots` (see the module docstring)."""
    folders: list[str] = []
    for root in roots:
        found = _lstat(root)
        if found is not None and found.st_uid == uid:
            yield root, found
        elif found is not None and _shared_folder(found):
            folders.append(root)
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            found = _lstat(entry.path)
            if found is None:
                continue
            if found.st_uid == uid:
                yield entry.path, found
            elif _shared_folder(found):
                folders.append(entry.path)


def memory_bytes(uid: int, tmpfs_roots: tuple[str, ...]) -> int:
    """Bytes of RAM held by `uid`'s files under `tmpfs_roots` (see `tmpfs_only`) and by its
    shared memory segments."""
    held = sum(_tree_bytes(path, found) for path, found in owned_entries(uid, tmpfs_roots))
    return held + sum(size for _, size in _segments(uid))


def sweep(uid: int) -> None:
    """Remove what `uid` left in SCRATCH_ROOTS and its shared memory segments (its processes must
    all be gone: a live one could add more while this runs)."""
    for path, found in list(owned_entries(uid, SCRATCH_ROOTS)):
        try:
            if stat.S_ISDIR(found.st_mode):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass  # gone already
    for shmid, _ in _segments(uid):
        _libc.shmctl(shmid, _IPC_RMID, None)


def tmpfs_only(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `paths` that live on a tmpfs (their files are RAM), per /proc/self/mounts."""
    with open("/proc/self/mounts") as mounts:
        points = [(fields[1], fields[2]) for fields in (line.split() for line in mounts)]

    def fs_type(path: str) -> str:
        real = os.path.realpath(path)
        within = [(point, kind) for point, kind in points
                  if real == point or real.startswith(point.rstrip("/") + "/")]
        return max(within, key=lambda pair: len(pair[0]), default=("", ""))[1]

    return tuple(path for path in paths if fs_type(path) == "tmpfs")


def _segments(uid: int) -> list[tuple[int, int]]:
    """(shmid, bytes resident) of the System V shared memory segments `uid` owns."""
    try:
        with open("/proc/sysvipc/shm") as table:
            header = table.readline().split()
            rows = [dict(zip(header, line.split())) for line in table]
    except OSError:
        return []
    return [(int(row["shmid"]), int(row.get("rss", row["size"]))) for row in rows
            if int(row["uid"]) == uid]


def _tree_bytes(path: str, found: os.stat_result) -> int:
    """Bytes allocated to `path` and, for a folder, everything below it (links not followed)."""
    total = found.st_blocks * 512
    if stat.S_ISDIR(found.st_mode):
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                inner = _lstat(os.path.join(folder, name))
                total += inner.st_blocks * 512 if inner is not None else 0
    return total


def _shared_folder(found: os.stat_result) -> bool:
    return stat.S_ISDIR(found.st_mode) and bool(found.st_mode & stat.S_IWOTH)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None

"""Process-privilege switches the sandbox needs: prctl flags, capability sets, dropping root.

Why ctypes: Python's `os` module has no prctl or capset. The sandbox is Linux-only anyway (it also
relies on /proc and pidfds).

What each switch buys:
- `set_dumpable(False)` on the evaluator, the fork server and keepers: the kernel then refuses
  same-uid processes without CAP_SYS_PTRACE access to their /proc/<pid>/environ, mem, fd, and
  ptrace -- so a candidate running under the harness's own uid cannot read the API keys in the
  harness's environment block.
- `set_child_subreaper()` on a keeper: whatever a candidate double-forks and detaches with setsid is
  reparented to its keeper instead of to init, so the keeper can still find and kill it.
- `drop_privileges()` in the child before any candidate code runs: when the sandbox runs as root it
  switches to `nobody` (so the candidate can neither write the harness's files, nor read root-only
  ones, nor signal or ptrace its processes) and keeps no capability -- except CAP_DAC_READ_SEARCH
  when nobody could not otherwise import from the Python installation (one under a root-only
  directory such as /root/.pyenv; the fork server finds out by trying). That capability reads
  anything root can read -- in bwrap, only the sandbox's read-only view.
"""
from __future__ import annotations

import ctypes
import os

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 0, 1, 2, 3
CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 5, 6, 7, 8
# What a root keeper needs to hand a private directory to `nobody`, switch the child to it, and
# later kill the child's processes and remove the directory.
KEEPER_CAPS = (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_KILL,
               CAP_SETGID, CAP_SETUID, CAP_SETPCAP)
CAP_NAMES = {CAP_CHOWN: "CAP_CHOWN", CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE",
             CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_FOWNER: "CAP_FOWNER",
             CAP_KILL: "CAP_KILL", CAP_SETGID: "CAP_SETGID", CAP_SETUID: "CAP_SETUID",
             CAP_SETPCAP: "CAP_SETPCAP"}

NOBODY = 65534  # uid and gid of nobody/nogroup on Debian-like systems
_CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def prctl(option: int, arg: int = 0) -> int:
    result = _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                         ctypes.c_ulong(0))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return result


def set_dumpable(flag: bool) -> None:
    prctl(PR_SET_DUMPABLE, int(flag))


def is_dumpable() -> bool:
    return prctl(PR_GET_DUMPABLE) == 1


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def effective_caps() -> int:
    """This process's effective capability mask, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def can_switch_user() -> bool:
    """True when this process is root and holds every capability a root keeper needs."""
    caps = effective_caps()
    return os.geteuid() == 0 and all(caps >> cap & 1 for cap in KEEPER_CAPS)


def capset(keep: int) -> None:
    """Set the effective and permitted capability sets to `keep`; inheritable to none."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(keep & 0xFFFFFFFF, keep & 0xFFFFFFFF, 0),
                          _CapData(keep >> 32, keep >> 32, 0))
    if _libc.capset(ctypes.byref(header), data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def drop_privileges(switch_user: bool, keep_read_all: bool = False) -> None:
    """Leave this process with no way to gain privileges again (irreversible).

    `switch_user`: become nobody/nogroup (needs `can_switch_user()`), keeping CAP_DAC_READ_SEARCH
    alone if `keep_read_all` (see the module docstring for why); otherwise drop every capability.
    """
    keep = 1 << CAP_DAC_READ_SEARCH if switch_user and keep_read_all else 0
    if switch_user:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        for cap in range(last_cap + 1):
            if not keep >> cap & 1:
                prctl(PR_CAPBSET_DROP, cap)
        prctl(PR_SET_KEEPCAPS, int(bool(keep)))
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        prctl(PR_SET_KEEPCAPS, 0)
    capset(keep)
    prctl(PR_SET_NO_NEW_PRIVS, 1)

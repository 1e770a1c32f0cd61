"""Process-privilege switches the sandbox needs: prctl flags, capability sets, dropping root.

Why ctypes: Python's `os` module has no prctl, capset or seccomp. The sandbox is Linux-only anyway
(it also relies on /proc).

What each switch buys:
- `set_dumpable(False)` on the evaluator, the fork server and keepers: the kernel then refuses
  same-uid processes without CAP_SYS_PTRACE access to their /proc/<pid>/environ, mem, fd, and
  ptrace -- so a candidate running under the harness's own uid cannot read the API keys in the
  harness's environment block.
- `set_child_subreaper()` on a keeper: whatever a candidate double-forks and detaches with setsid is
  reparented to its keeper instead of to init, so the keeper can still find and kill it.
- `drop_privileges(uid)` in the child before any candidate code runs: when the sandbox runs as root
  it switches to the candidate's own uid (uids.py), so the candidate can neither write the
  harness's files, nor read root-only ones, nor signal or ptrace its processes or another
  candidate's; and it keeps no capability, ever. (A Python installation under a root-only
  directory such as /root/.pyenv is then unreadable to the candidate: the fork server finds out by
  trying, and the evaluator refuses that sandbox with a one-line fix rather than keep
  CAP_DAC_READ_SEARCH, which reads every file root can.)
- `forbid_affinity_changes()` in the child once it is pinned: a seccomp filter makes
  sched_setaffinity fail with EPERM for it and everything it starts, so a candidate cannot leave
  the cores it is timed on for idle ones (its runtimes would come out low on a loaded machine).
  Prevented rather than checked after each call: a program could leave and come back within one.
  Written for x86_64 and aarch64 (the filter names system calls by number); elsewhere there is none.
"""
from __future__ import annotations

import ctypes
import os
import platform

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1

CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 0, 1, 2, 3
CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 5, 6, 7, 8
# What a root keeper needs to hand a private directory to the candidate's uid, switch the child to
# it, and later kill the child's processes and remove its files.
KEEPER_CAPS = (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_KILL,
               CAP_SETGID, CAP_SETUID, CAP_SETPCAP)
CAP_NAMES = {CAP_CHOWN: "CAP_CHOWN", CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE",
             CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_FOWNER: "CAP_FOWNER",
             CAP_KILL: "CAP_KILL", CAP_SETGID: "CAP_SETGID", CAP_SETUID: "CAP_SETUID",
             CAP_SETPCAP: "CAP_SETPCAP"}

_CAP_VERSION_3 = 0x20080522
# Per machine: (AUDIT_ARCH_*, the seccomp syscall, sched_setaffinity), from the kernel's tables.
_SECCOMP_ARCHES = {"x86_64": (0xC000003E, 317, 203), "aarch64": (0xC00000B7, 277, 122)}
_X32_SYSCALL_BIT = 0x40000000

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


def drop_privileges(uid: int | None) -> None:
    """Leave this process with no capability and no way to gain one again (irreversible).

    `uid`: become that uid and gid, with no supplementary groups (needs `can_switch_user()`);
    None keeps the current ones.
    """
    if uid is not None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        for cap in range(last_cap + 1):
            prctl(PR_CAPBSET_DROP, cap)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    capset(0)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def affinity_filter_supported() -> bool:
    return platform.machine() in _SECCOMP_ARCHES


def forbid_affinity_changes() -> None:
    """Install, on every thread of this process, a seccomp filter under which sched_setaffinity
    fails with EPERM (so do system calls of another ABI, such as i386's int 0x80, with ENOSYS).
    Needs PR_SET_NO_NEW_PRIVS (drop_privileges sets it); OSError where the kernel refuses."""
    audit_arch, seccomp_nr, setaffinity_nr = _SECCOMP_ARCHES[platform.machine()]
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, errno_base = 0x7FFF0000, 0x00050000
    program = [
        (load, 0, 0, 4),                       # 0: the architecture
        (jeq, 0, 5, audit_arch),               # 1: another ABI -> 7
        (load, 0, 0, 0),                       # 2: the system call number
        (jge, 3, 0, _X32_SYSCALL_BIT),         # 3: x32 ABI -> 7
        (jeq, 0, 1, setaffinity_nr),           # 4: sched_setaffinity -> 5, else 6
        (ret, 0, 0, errno_base | 1),           # 5: EPERM
        (ret, 0, 0, allow),                    # 6
        (ret, 0, 0, errno_base | 38),          # 7: ENOSYS
    ]
    filters = (_SockFilter * len(program))(*(_SockFilter(*op) for op in program))
    fprog = _SockFprog(len(program), filters)
    if _libc.syscall(ctypes.c_long(seccomp_nr), ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
                     ctypes.c_ulong(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err) if err else 'a thread could not be synchronised'}")

"""What a fork server is started with: its environment, its sys.path, and (in bwrap) its view.

Environment: an allow-list, never a deny-list, so no API key, token or proxy setting can slip
through under a name nobody thought of. Passed from the evaluator's environment: PATH,
CUDA_VISIBLE_DEVICES (unless the candidate's worker slot names its own GPU) and LD_LIBRARY_PATH
(CUDA builds of torch may need it to find their libraries). Set to fixed values: locale and UTF-8
mode, no bytecode writing, one BLAS/OpenMP thread (the server must stay single-threaded to fork
safely; each child sets its own count), and HOME and TMPDIR (each child gets a private directory
instead, see keeper.py). PYTHONPATH is never passed:
the server runs `python -I` and is told the exact directories it needs (`import_roots`).

Which sandbox (`resolve_sandbox`): "auto", the default, is bwrap where bwrap can create its
namespaces here, else "process" with a one-line notice on stderr (once per process).

The bwrap view (sandbox="bwrap"): /usr and the usual /bin, /lib links, the few /etc files the
dynamic loader and `getpass` read, the Python installation and virtual environment, the parts of
the `evaluator` package a fork server imports (SERVER_PARTS: not the workloads that make the
windows, nor the harness, nor the repository around them), /sys and any /dev/nvidia* devices (CUDA
needs them), all read-only; a fresh /proc, a minimal /dev and a private tmpfs on /tmp; new PID,
network (nothing but its own loopback), IPC, UTS and cgroup namespaces; a new terminal session.
When running as root, every capability is dropped but the few a keeper needs to switch the child
to its own uid (privileges.KEEPER_CAPS); the child keeps none.

Why no --die-with-parent: the kernel sends that signal when the *thread* that started bwrap exits,
so a server started from a worker thread would die with the thread. It is not needed either: the
server exits as soon as its control socket reports EOF (the evaluator closed it or died), bwrap
exits with it, and the kernel kills everything left in the PID namespace.
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from evaluator.errors import UserError
from evaluator.sandbox import keeper, privileges

SANDBOXES = ("auto", "process", "bwrap")
PASSED_VARIABLES = ("PATH", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
SANDBOX_TMP = "/tmp"
SERVER_PARTS = ("__init__.py", "errors.py", "sandbox", "timing")  # of the evaluator package
INSTALL_BWRAP = "install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap)"
BWRAP_HINT = (f"{INSTALL_BWRAP} and allow user namespaces (sysctl kernel.unprivileged_userns_clone=1), "
              "or use sandbox='process'")


def child_variables(gpu: str | None = None) -> dict[str, str]:
    """The allow-listed variables a child gets (keeper.py adds HOME, TMPDIR, thread settings);
    `gpu`, when given, replaces the evaluator's CUDA_VISIBLE_DEVICES: the one GPU of its slot."""
    env = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    env.setdefault("PATH", os.defpath)
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", PYTHONUTF8="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def server_environment(sandbox: str) -> dict[str, str]:
    """The complete environment a fork server (and so every child's environ block) starts with."""
    tmp = SANDBOX_TMP if sandbox == "bwrap" else tempfile.gettempdir()
    env = {**child_variables(), "HOME": tmp, "TMPDIR": tmp}
    env.update({name: "1" for name in keeper.THREAD_VARIABLES})
    return env


def resolve_sandbox(sandbox: str) -> str:
    """The sandbox that `sandbox` means here: "auto" is bwrap where it works, else process."""
    return _auto() if sandbox == "auto" else sandbox


@functools.cache
def _auto() -> str:
    path, problem = _bwrap()
    if path is not None:
        return "bwrap"
    print(f"eplb-evolve: sandbox 'auto': {problem}, so candidates run in the 'process' sandbox, which "
          f"isolates less ({INSTALL_BWRAP} for the stronger one)", file=sys.stderr)
    return "process"


def import_roots() -> list[str]:
    """The sys.path entries a server needs: where `evaluator` and `torch` (and numpy) live."""
    import torch
    roots = [str(_evaluator_dir().parent), str(Path(torch.__file__).resolve().parents[1])]
    try:
        import numpy
        roots.append(str(Path(numpy.__file__).resolve().parents[1]))
    except ImportError:
        pass
    return list(dict.fromkeys(roots))


def bwrap_executable() -> str:
    """The bwrap binary, after checking it can create the namespaces we need; UserError if not."""
    path, problem = _bwrap()
    if path is None:
        raise UserError(f"sandbox 'bwrap' requested but {problem}: {BWRAP_HINT}")
    return path


@functools.cache
def _bwrap() -> tuple[str | None, str]:
    """(the bwrap binary, "") where it can create the namespaces we need, else (None, why not)."""
    path = shutil.which("bwrap")
    if path is None:
        return None, "bwrap is not installed"
    probe = subprocess.run(
        [path, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-pid",
         "--unshare-net", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return None, f"bwrap cannot run here ({reason})"
    return path, ""


def bwrap_command(roots: list[str]) -> list[str]:
    """The bwrap argv prefix that runs a fork server in the read-only view described above."""
    args = [bwrap_executable(), "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd",
                "/etc/group", "/etc/nsswitch.conf"):
        args += ["--ro-bind-try", etc, etc]
    # The private /tmp first, so that trees which live under /tmp (a checkout or venv there) are
    # bound on top of it rather than hidden by it.
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", SANDBOX_TMP]
    trees = _read_only_trees(roots)
    for parent in sorted({str(p) for tree in trees for p in Path(tree).parents} - {"/"}):
        # bwrap would create these 0700: then a candidate's uid could not reach what is bound below
        if not parent.startswith("/usr"):
            args += ["--perms", "0755", "--dir", parent]
    for path in trees:
        args += ["--ro-bind", path, path]
    args += ["--ro-bind-try", "/sys", "/sys"]
    for device in sorted(glob.glob("/dev/nvidia*")):
        args += ["--dev-bind", device, device]
    args += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--new-session", "--chdir", SANDBOX_TMP]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"]
        if privileges.can_switch_user():
            for cap in privileges.KEEPER_CAPS:
                args += ["--cap-add", privileges.CAP_NAMES[cap]]
    return args + ["--"]


def _read_only_trees(roots: list[str]) -> list[str]:
    """Python's installation and venv, the evaluator's SERVER_PARTS and the other import roots,
    minus any tree already inside another (the repository root is not one of them)."""
    evaluator_dir = _evaluator_dir()
    candidates = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
                  os.path.dirname(os.path.realpath(sys.executable))}
    candidates.update(str(evaluator_dir / part) for part in SERVER_PARTS)
    candidates.update(r for r in roots if r != str(evaluator_dir.parent))
    trees = sorted(candidates)
    return [t for t in trees if not any(t != o and t.startswith(o + os.sep) for o in trees)]


def _evaluator_dir() -> Path:
    """The `evaluator` package's folder (this module is evaluator/sandbox/isolation.py)."""
    return Path(__file__).resolve().parents[1]

"""The evaluator as a real separate process (a harness with API keys in its environment): secrets
never reach a candidate, and nothing survives the harness -- killed, or exiting without close()."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from paths import REPO
from sandbox_support import in_sandbox, program, wait_until_gone, wait_until_present

from evaluator.errors import UserError
from evaluator.sandbox import isolation

pytestmark = pytest.mark.slow  # each test starts a harness process and its fork server (~3 s)

HARNESS = """
import json, sys
from pathlib import Path
import torch
from evaluator.sandbox import servers
from evaluator.sandbox.candidate_process import CandidateProcess, Limits
sandbox, path, action = sys.argv[1:4]
candidate = CandidateProcess(Path(path), Limits(sandbox=sandbox, call_timeout_s=60))
candidate.start()
print(json.dumps({"server": servers.server_for(sandbox).pid}), flush=True)
if action == "dump":
    result = candidate.call(torch.rand(4, 16), 24, 4, 1, 4)
    candidate.close()
    loot = b"".join(t.numpy().tobytes() for t in (result.phy2log, result.log2phy, result.logcnt))
    print(json.dumps({"output": candidate.output(), "loot": loot.hex()}), flush=True)
elif action == "hang":
    candidate.call(torch.rand(4, 16), 24, 4, 1, 4)
elif action == "exit":
    sys.stdin.readline()
    sys.exit(0)  # no close(): the atexit handler must clean up
"""


def _bwrap_available() -> bool:
    try:
        isolation.bwrap_executable()
        return True
    except UserError:
        return False


NEEDS_BWRAP = pytest.mark.skipif(not _bwrap_available(),
                                 reason="bwrap is not installed or cannot run here")
SANDBOXES = ["process", pytest.param("bwrap", marks=NEEDS_BWRAP)]


def _harness(sandbox: str, path: Path, action: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HARNESS, sandbox, str(path), action], cwd=REPO,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_no_secret_from_the_harness_environment_reaches_the_candidate(tmp_path, sandbox):
    in_sandbox(sandbox)
    secret = "sk-secret-" + uuid.uuid4().hex
    env = {"PATH": os.environ.get("PATH", os.defpath), "OPENAI_API_KEY": secret,
           "ANTHROPIC_API_KEY": secret, "HTTPS_PROXY": f"http://user:{secret}@proxy.example:3128",
           "https_proxy": f"http://{secret}@proxy.example:3128", "GITHUB_TOKEN": secret}
    harness = _harness(sandbox, program("env_dump", tmp_path), "dump", env)
    stdout, _ = harness.communicate(timeout=120)
    assert harness.returncode == 0
    report = json.loads(stdout.splitlines()[-1])
    assert "HUNT home=" in report["output"] and "PATH=" in report["output"]
    assert secret not in stdout and secret.encode().hex() not in report["loot"]
    assert "proxy.example" not in stdout


@pytest.mark.parametrize("sandbox, ending", [
    ("process", "exit-without-close"), ("process", "sigkill"),
    pytest.param("bwrap", "exit-without-close", marks=NEEDS_BWRAP),
    pytest.param("bwrap", "sigkill", marks=NEEDS_BWRAP)])
def test_nothing_survives_the_harness(tmp_path, sandbox, ending):
    in_sandbox(sandbox)
    marker = f"eplb-daemon-{uuid.uuid4().hex}"
    path = program("daemon_then_hang", tmp_path, marker=marker)
    action = "hang" if ending == "sigkill" else "exit"
    harness = _harness(sandbox, path, action, {"PATH": os.environ.get("PATH", os.defpath)})
    try:
        server = json.loads(harness.stdout.readline())["server"]
        assert wait_until_present(marker), "control: the candidate's daemon is running"
        if ending == "sigkill":
            time.sleep(0.2)  # let the harness get into the call
            harness.send_signal(signal.SIGKILL)
        else:
            harness.stdin.write("\n")
            harness.stdin.flush()
        assert harness.wait(timeout=30) in (0, -signal.SIGKILL)
        assert wait_until_gone(marker, 5) == []
        end = time.monotonic() + 5
        while not _gone(server) and time.monotonic() < end:
            time.sleep(0.05)
        assert _gone(server), "the fork server outlived the harness"
    finally:
        harness.kill()
        harness.wait()


def test_where_bwrap_is_missing_asking_for_it_is_a_user_error_and_auto_means_process(tmp_path):
    script = ("from evaluator.sandbox.candidate_process import CandidateProcess, Limits\n"
              "from evaluator.errors import UserError\n"
              "from pathlib import Path\n"
              f"print('auto:', CandidateProcess(Path('{tmp_path / 'x.py'}'), Limits()).sandbox)\n"
              "try:\n"
              f"    CandidateProcess(Path('{tmp_path / 'x.py'}'), Limits(sandbox='bwrap')).start()\n"
              "except UserError as exc:\n"
              "    print('UserError:', exc)\n")
    (tmp_path / "x.py").write_text("def rebalance_experts(*a): pass\n")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={"PATH": str(empty)},
                          capture_output=True, text=True, timeout=60)
    auto, refused = done.stdout.splitlines()
    assert auto == "auto: process"
    assert done.stderr == ("eplb-evolve: sandbox 'auto': bwrap is not installed, so candidates run in the "
                           "'process' sandbox, which isolates less (install bubblewrap (Debian/Ubuntu: "
                           "apt-get install -y bubblewrap) for the stronger one)\n")
    assert refused.startswith("UserError: sandbox 'bwrap' requested but bwrap is not installed")
    assert "apt-get install -y bubblewrap" in refused

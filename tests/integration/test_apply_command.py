"""`eplb-evolve apply` through a real subprocess: outputs, exit codes, atomic writes, --json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from paths import REPO

CORPUS = REPO / "tests" / "responses"
BASE = CORPUS / "base_program.py"

# Until every verb's module imports cleanly, the verb is driven through its own add_parser/run, mapping a
# UserError to exit 2 the way harness/cli/main.py does; switch to `python -m harness apply` once that is stable.
_DRIVER = """
import argparse, sys
from evaluator.errors import UserError
from harness.cli import apply_command
parser = argparse.ArgumentParser(prog="eplb-evolve")
apply_command.add_parser(parser.add_subparsers(dest="command", required=True))
try:
    sys.exit(apply_command.run(parser.parse_args(sys.argv[1:])))
except UserError as error:
    print(f"eplb-evolve: error: {error}", file=sys.stderr)
    sys.exit(2)
"""


def apply_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _DRIVER, "apply", *map(str, args)], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)


def test_program_goes_to_stdout_and_the_report_to_stderr(tmp_path: Path) -> None:
    done = apply_cli(BASE, CORPUS / "indent_under.txt", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == (CORPUS / "indent_under.expected.py").read_text()
    assert done.stderr.splitlines() == [
        "name: prefer_fewer_replicas",
        "description: Break ties towards the expert with fewer replicas.",
        "applied 1 block(s): 1 tolerant",
        "block 1: tolerant (indentation +4 spaces) at line 12",
    ]


def test_output_file_is_written_whole_with_ordinary_permissions(tmp_path: Path) -> None:
    out = tmp_path / "child.py"
    out.write_text("old\n")
    done = apply_cli(BASE, CORPUS / "wellformed_three_blocks.txt", "-o", out, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert out.read_text() == (CORPUS / "wellformed_three_blocks.expected.py").read_text()
    assert done.stdout.splitlines()[-1] == f"wrote {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child.py"]  # no temporary file left behind
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_a_reply_that_cannot_apply_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "child.py"
    out.write_text("old\n")
    done = apply_cli(BASE, CORPUS / "partial_failure.txt", "-o", out, cwd=tmp_path)
    assert done.returncode == 1
    assert out.read_text() == "old\n"
    assert "not applied: 1 of 3 block(s) failed" in done.stdout
    assert "block 2 failed: SEARCH not found; nearest program region: lines 25-25" in done.stdout
    to_stdout = apply_cli(BASE, CORPUS / "syntax_error.txt", cwd=tmp_path)
    assert (to_stdout.returncode, to_stdout.stdout) == (1, "")
    assert "not applied: result does not parse: line 22" in to_stdout.stderr


def test_json_holds_the_reply_the_outcomes_and_the_program(tmp_path: Path) -> None:
    done = apply_cli(BASE, CORPUS / "chained_blocks.txt", "--json", cwd=tmp_path)
    assert done.returncode == 0
    payload = json.loads(done.stdout)
    assert payload == {
        "name": "chained", "description": "The second block edits a line the first block wrote.",
        "ok": True, "error": None, "rewrite": False,
        "outcomes": [{"index": 1, "status": "exact", "detail": "", "start_line": 22},
                     {"index": 2, "status": "exact", "detail": "", "start_line": 23}],
        "program": (CORPUS / "chained_blocks.expected.py").read_text(),
    }


def test_json_for_an_unparsable_reply_says_why_and_exits_1(tmp_path: Path) -> None:
    done = apply_cli(BASE, CORPUS / "truncated.txt", "--json", cwd=tmp_path)
    payload = json.loads(done.stdout)
    assert done.returncode == 1
    assert (payload["name"], payload["ok"], payload["program"], payload["outcomes"]) == (None, False, None, [])
    assert payload["error"].endswith("the response looks truncated")


def test_missing_or_unwritable_files_are_usage_errors(tmp_path: Path) -> None:
    missing = apply_cli(BASE, tmp_path / "nope.txt", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == (f"eplb-evolve: error: cannot read response {tmp_path / 'nope.txt'}: "
                              "No such file or directory\n")
    no_folder = apply_cli(BASE, CORPUS / "bare_blocks.txt", "-o", tmp_path / "absent" / "x.py", cwd=tmp_path)
    assert no_folder.returncode == 2
    assert no_folder.stderr.startswith(f"eplb-evolve: error: cannot write {tmp_path / 'absent' / 'x.py'}: ")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9".encode("latin-1"))
    not_utf8 = apply_cli(latin, CORPUS / "bare_blocks.txt", cwd=tmp_path)
    assert not_utf8.returncode == 2 and "is not UTF-8 text" in not_utf8.stderr


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current

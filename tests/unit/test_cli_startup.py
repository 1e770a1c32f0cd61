"""Light verbs start without torch: only the chosen verb's module is imported."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from harness.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
print("torch" in sys.modules)
"""


def torch_imported(*argv: str) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv))], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("argv", [("--help",), ("apply", "--help"), ("log", "--help"), ("show", "--help"),
                                  ("best", "--help")])
def test_light_verbs_do_not_import_torch(argv: tuple[str, ...]) -> None:
    assert not torch_imported(*argv)


def test_verbs_that_evaluate_do_import_it_so_the_probe_can_fail() -> None:
    assert torch_imported("eval", "--help")


def test_top_level_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import VERBS, main
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {verb} " in out for verb in VERBS)

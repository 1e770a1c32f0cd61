"""The command line: one module per verb (`*_command.py`), the dispatcher (`main`), and `run_setup`,
which assembles a run from its settings. Nothing imports this package; it imports everything."""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """The `eplb-evolve` entry point (imported on call, so `import harness.cli.x` stays light)."""
    from harness.cli.main import main as dispatch
    return dispatch(argv)

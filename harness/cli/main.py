"""`eplb-evolve`: a thin dispatcher. Each verb lives in its own module exposing add_parser/run.

Only the chosen verb's module is imported: `apply`, `log`, `show`, `best` and `--help` must start
in a fraction of a second, and the verbs that evaluate programs import torch (about 1.3 s).

Exit codes: 0 ok, 1 the thing evaluated/applied was bad, 2 the user's input was bad (one line on
stderr, no traceback).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from evaluator.errors import UserError

# verb -> (module, one-line help for the top-level listing); review_command serves three verbs, run_command two.
VERBS: dict[str, tuple[str, str]] = {
    "run": ("run_command", "start a search from the seed program"),
    "resume": ("run_command", "continue a stopped or crashed run"),
    "log": ("review_command", "one row per candidate of a run"),
    "show": ("review_command", "a candidate's description, metrics, feedback and diff against its parent"),
    "best": ("review_command", "the best candidate of a run (and --export its program)"),
    "report": ("report_command", "plots and a Markdown summary of a run"),
    "eval": ("eval_command", "evaluate an EPLB program on a suite or on trace files"),
    "compare": ("compare_command", "evaluate several programs on the same windows and print one table"),
    "apply": ("apply_command", "apply a saved LLM response to a program"),
    "trace": ("trace_command", "work with load trace files"),
}
DESCRIPTION = "Evolutionary search for better MoE expert-placement (EPLB) algorithms."


def _verb_of(argv: list[str]) -> str | None:
    """The first argument that is not an option: the verb (None when only options were given)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser for one verb's module (every verb when `verb` is None: for tests and docs)."""
    parser = argparse.ArgumentParser(prog="eplb-evolve", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = dict.fromkeys(name for name, _ in VERBS.values()) if verb not in VERBS else {VERBS[verb][0]: None}
    for name in modules:
        module = importlib.import_module(f"harness.cli.{name}")
        known = set(subparsers.choices)
        module.add_parser(subparsers)
        for added in set(subparsers.choices) - known:
            subparsers.choices[added].set_defaults(verb_handler=module.run)
    return parser


def _top_level_help() -> str:
    width = max(map(len, VERBS))
    rows = "\n".join(f"  {verb:<{width}}  {text}" for verb, (_, text) in VERBS.items())
    return (f"usage: eplb-evolve [-h] COMMAND ...\n\n{DESCRIPTION}\n\ncommands:\n{rows}\n\n"
            "Run 'eplb-evolve COMMAND --help' for a command's options.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = _verb_of(argv)
    if verb is None and any(arg in ("-h", "--help") for arg in argv):
        print(_top_level_help())
        return 0
    args = build_parser(verb).parse_args(argv)
    try:
        return args.verb_handler(args)
    except UserError as error:
        print(f"eplb-evolve: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eplb-evolve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

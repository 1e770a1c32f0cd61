"""`eplb-evolve`: a thin dispatcher. Each verb lives in its own module exposing add_parser/run.

Exit codes: 0 ok, 1 the thing evaluated/applied was bad, 2 the user's input was bad (one line on
stderr, no traceback).
"""
from __future__ import annotations

import argparse
import sys

from harness.cli import trace_command
from evaluator.errors import UserError
from harness.cli import apply_command, compare_command, eval_command, report_command, review_command, run_command

VERBS = (run_command, review_command, report_command, eval_command, compare_command, apply_command,
         trace_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eplb-evolve",
        description="Evolutionary search for better MoE expert-placement (EPLB) algorithms.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for verb in VERBS:
        known = set(subparsers.choices)
        verb.add_parser(subparsers)
        for name in set(subparsers.choices) - known:
            subparsers.choices[name].set_defaults(run=verb.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UserError as error:
        print(f"eplb-evolve: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eplb-evolve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

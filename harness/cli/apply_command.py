"""`eplb-evolve apply PROGRAM RESPONSE [-o OUT] [--json]`: apply a saved model reply to a program.

The same parse and patch steps the search runs, by hand: to replay what happened to a candidate or
to see why a reply was refused. Exit 0 when applied; 1 when the reply cannot be applied (nothing is
written); 2 for a usage error (a UserError, printed by the CLI).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from evaluator.errors import UserError
from harness.diff.errors import ProgramError
from harness.diff.patch import PatchResult, apply_edits
from harness.diff.response import Response, ResponseError, parse_response
from harness.store.files import atomic_write


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "apply", help="apply a saved LLM response (SEARCH/REPLACE blocks or <CODE>) to a program",
        description="Apply a saved model reply to a program exactly as the search would: print the reply's "
                    "name, description and what happened to each block, and write the new program.")
    p.add_argument("program", type=Path, help="the parent program (a Python file)")
    p.add_argument("response", type=Path, help="the saved model reply (text with <DIFF> blocks or <CODE>)")
    p.add_argument("-o", "--output", type=Path, metavar="OUT",
                   help="write the new program to OUT (atomically) instead of stdout")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: name, description, ok, error, outcomes and the new program")


def run(args: argparse.Namespace) -> int:
    program = _read(args.program, "program")
    reply = _read(args.response, "response")
    response: Response | None
    try:
        response = parse_response(reply)
        result = apply_edits(program, response)
    except ResponseError as error:
        response, result = None, PatchResult(False, None, (), error.reason)
    except ProgramError as error:  # the program file itself is broken: the user's to fix
        raise UserError(error.reason) from None
    if result.ok and args.output is not None:
        _write_atomically(args.output, result.text or "")
    if args.json:
        payload = {"name": response.name if response else None,
                   "description": response.description if response else None,
                   **result.to_dict(), "program": result.text}
        print(json.dumps(payload, indent=2))
        return 0 if result.ok else 1
    # The report goes to stderr when stdout carries the program, so `apply P R > new.py` stays clean.
    report = sys.stdout if args.output is not None else sys.stderr
    _print_report(report, response, result)
    if result.ok and args.output is None:
        sys.stdout.write(result.text or "")
    elif result.ok:
        print(f"wrote {args.output}", file=report)
    return 0 if result.ok else 1


def _print_report(stream: TextIO, response: Response | None, result: PatchResult) -> None:
    if response is not None:
        print(f"name: {response.name}", file=stream)
        description = response.description.replace("\n", "\n  ") or "(none)"
        print(f"description: {description}", file=stream)
    print(result.summary(), file=stream)


def _read(path: Path, label: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{label} {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise UserError(f"cannot read {label} {path}: {error.strerror or error}") from None


def _write_atomically(path: Path, text: str) -> None:
    """A reader never sees half a program, and an interrupted write leaves the old file intact."""
    try:
        atomic_write(path, text)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None

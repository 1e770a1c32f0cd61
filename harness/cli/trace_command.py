"""`eplb-evolve trace convert IN.json OUT.npz`: a large JSON load trace into its compact form.

Streaming a 200 MB JSON trace takes seconds every time a process loads it; the converted .npz
holds the summed windows (a few MB) and loads in milliseconds, so every worker of a search can
afford to read it. `--trace` accepts either form.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluator.errors import UserError
from evaluator.workloads.tracefile import load_trace, save_npz


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("trace", help="work with load trace files")
    verbs = parser.add_subparsers(dest="trace_verb", required=True)
    convert = verbs.add_parser("convert", help="sum a JSON load trace into windows and save them as .npz",
                               description=__doc__.splitlines()[0])
    convert.add_argument("input", type=Path, help="load-history JSON (optionally .gz)")
    convert.add_argument("output", type=Path, help="the .npz to write")
    convert.add_argument("--window-steps", type=int, default=None,
                         help="steps per window (default 100, as in the ADRS trace)")
    convert.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Convert; 0 on success (a bad input raises UserError, which the CLI turns into exit 2)."""
    if args.output.suffix != ".npz":
        raise UserError(f"{args.output}: the output must end in .npz, which is how --trace recognises the "
                        "compact form")
    trace = load_trace(args.input, args.window_steps)
    try:
        save_npz(trace, args.output)
    except OSError as error:
        raise UserError(f"{args.output}: cannot write it ({error.strerror}); check the output path") from None
    count, layers, experts = trace.windows.shape
    if args.json:
        print(json.dumps({"input": str(args.input), "output": str(args.output), "windows": count,
                          "window_steps": trace.window_steps, "last_window_steps": int(trace.steps[-1]),
                          "layers": layers, "experts": experts}))
    else:
        print(f"wrote {args.output}: {trace.describe()}")
    return 0

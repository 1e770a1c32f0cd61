"""Real load traces on disk: the ADRS/vLLM load-history JSON, streamed, and a compact .npz form.

The JSON form is `{"load_history": [{"logical_expert_load": [[tokens per expert] per layer]}
per step, ...]}`. Real traces run to hundreds of megabytes, and `json.load` would turn one into
Python lists several times its size, so the file is read in chunks and decoded one step object
at a time; each step is added to its window's running sum and dropped. Memory stays O(chunk +
one step + the window sums), whatever the file size.

The .npz form (`eplb-evolve trace convert`) holds the windows already summed: a few megabytes
that load in milliseconds. Both load into the same `TraceWindows`.
"""
from __future__ import annotations

import functools
import gzip
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

from evaluator.errors import UserError

DEFAULT_WINDOW_STEPS = 100  # steps per window when neither the user nor the file says (as in ADRS)
_CHUNK_CHARS = 1 << 20
_LOOKBACK = 64  # a decode error this close to the buffer's end may just be a value cut by the chunk
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NPZ_FORMAT = "eplb-evolve-trace-v1"
_EXACT_FLOAT = 2**53  # floats up to this are whole token counts without rounding
_HISTORY_KEY = "load_history"
_LOAD_KEY = "logical_expert_load"


@dataclass(frozen=True, eq=False)
class TraceWindows:
    """A trace cut into windows: `windows[i]` is the [L, E] load summed over `steps[i]` steps."""

    windows: np.ndarray  # [W, L, E] int64, read-only
    steps: np.ndarray  # [W] int64: window_steps for all but possibly the last (shorter) window
    window_steps: int

    def describe(self) -> str:
        """'12 windows of 100 steps (last 74), 58 layers x 256 experts'."""
        count, layers, experts = self.windows.shape
        last = int(self.steps[-1])
        tail = f" (last {last})" if last != self.window_steps else ""
        plural = "s" if count != 1 else ""
        return f"{count} window{plural} of {self.window_steps} steps{tail}, {layers} layers x {experts} experts"


def load_trace(path: Path, window_steps: int | None) -> TraceWindows:
    """Read a trace (.npz from `trace convert`, else load-history JSON, optionally .gz) into windows.

    `window_steps` None means the file's own window length (.npz) or DEFAULT_WINDOW_STEPS (JSON).
    Cached per process on the path, its size and modification time, so scenarios can ask freely.
    """
    if window_steps is not None and window_steps < 1:
        raise UserError(f"--window-steps must be at least 1, got {window_steps}")
    try:
        stat = path.stat()
    except OSError as error:
        raise UserError(f"{path}: cannot read the trace ({error.strerror}); check the --trace path") from None
    return _load_cached(path.resolve(), window_steps, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, window_steps: int | None, _size: int, _mtime_ns: int) -> TraceWindows:
    if path.suffix == ".npz":
        return _read_npz(path, window_steps)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return read_load_history(handle, path.name, window_steps or DEFAULT_WINDOW_STEPS)
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise UserError(f"{path.name}: cannot read it as a JSON load-history trace ({error})") from None


def save_npz(trace: TraceWindows, path: Path) -> None:
    """Write the compact form that `load_trace` reads back bit for bit."""
    with open(path, "wb") as handle:
        np.savez(handle, format=np.array(_NPZ_FORMAT), windows=trace.windows, steps=trace.steps,
                 window_steps=np.array(trace.window_steps, dtype=np.int64))


def _read_npz(path: Path, window_steps: int | None) -> TraceWindows:
    name = path.name
    try:
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data.files or str(data["format"]) != _NPZ_FORMAT:
                raise UserError(f"{name}: not an eplb-evolve trace; make one with "
                                f"'eplb-evolve trace convert TRACE.json {name}'")
            windows, steps, stored = data["windows"], data["steps"], int(data["window_steps"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(f"{name}: cannot read it as an .npz trace ({error}); convert the JSON trace again") from None
    if windows.ndim != 3 or windows.dtype != np.int64 or steps.shape != windows.shape[:1] or windows.shape[0] == 0:
        raise UserError(f"{name}: damaged trace (windows {windows.shape} {windows.dtype}, steps {steps.shape}); "
                        "convert the JSON trace again")
    if window_steps is not None and window_steps != stored:
        raise UserError(f"{name}: holds windows of {stored} steps but --window-steps {window_steps} was asked; "
                        f"pass --window-steps {stored} or convert the JSON trace again with "
                        f"--window-steps {window_steps}")
    if (windows < 0).any():
        raise UserError(f"{name}: damaged trace (negative loads); convert the JSON trace again")
    windows.flags.writeable = False
    return TraceWindows(windows=windows, steps=steps.astype(np.int64), window_steps=stored)


def read_load_history(handle: TextIO, name: str, window_steps: int,
                      chunk_chars: int = _CHUNK_CHARS) -> TraceWindows:
    """Stream a load-history JSON document from `handle` into windows; `name` is for messages."""
    return _LoadHistoryReader(handle, name, window_steps, chunk_chars).read()


class _LoadHistoryReader:
    """Streams one load-history JSON document: values decoded one at a time from a sliding buffer."""

    def __init__(self, handle: TextIO, name: str, window_steps: int, chunk_chars: int) -> None:
        self.handle = handle
        self.chunk_chars = chunk_chars
        self.name = name
        self.window_steps = window_steps
        self.decoder = json.JSONDecoder()
        self.buffer = ""
        self.pos = 0  # read position in `buffer`
        self.dropped = 0  # characters discarded before `buffer` (for positions in messages)

    # -- the document ------------------------------------------------------------------------
    def read(self) -> TraceWindows:
        if self._peek() != "{":
            self._fail("is not a JSON object; expected a load-history trace "
                       '{"load_history": [{"logical_expert_load": [[...], ...]}, ...]}')
        self.pos += 1
        trace = None
        while self._peek() != "}":
            key = self._value("a key")
            if not isinstance(key, str):
                self._fail(f"has a top-level key that is not a string at character {self._where()}")
            self._expect(":")
            if key == _HISTORY_KEY:
                trace = self._history()
            else:
                self._value(f"the value of '{key}'")
            if self._peek() != ",":
                break
            self.pos += 1
        self._expect("}")
        if self._peek() != "":
            self._fail(f"has extra data after the JSON object at character {self._where()}")
        if trace is None:
            self._fail(f"has no '{_HISTORY_KEY}' key; expected "
                       '{"load_history": [{"logical_expert_load": [[...], ...]}, ...]}')
        return trace

    def _history(self) -> TraceWindows:
        self._expect("[")
        if self._peek() == "]":
            self._fail(f"'{_HISTORY_KEY}' is empty; the trace needs at least two windows of steps")
        windows = _WindowSums(self.window_steps)
        while True:
            step = windows.num_steps
            entry = self._value(f"step {step}")
            if not isinstance(entry, dict) or _LOAD_KEY not in entry:
                self._fail(f"step {step} has no '{_LOAD_KEY}'; each step must be "
                           f'{{"{_LOAD_KEY}": [[tokens per expert] per layer]}}')
            windows.add(_step_loads(entry[_LOAD_KEY], step, windows.shape, self.name))
            if self._peek() != ",":
                break
            self.pos += 1
        self._expect("]")
        return windows.result()

    # -- the buffer --------------------------------------------------------------------------
    def _fill(self, at_least: int) -> bool:
        """Read more text (at least `at_least` characters when there are); False at end of file."""
        chunk = self.handle.read(max(self.chunk_chars, at_least))
        if not chunk:
            return False
        if self.pos > self.chunk_chars:  # drop what was consumed: memory stays O(chunk + one value)
            self.dropped += self.pos
            self.buffer = self.buffer[self.pos:]
            self.pos = 0
        self.buffer += chunk
        return True

    def _peek(self) -> str:
        """The next non-whitespace character ('' at end of file), without consuming it."""
        while True:
            blank = _WHITESPACE.match(self.buffer, self.pos)
            assert blank is not None  # the pattern matches the empty string
            self.pos = blank.end()
            if self.pos < len(self.buffer) or not self._fill(0):
                return self.buffer[self.pos:self.pos + 1]

    def _expect(self, char: str) -> None:
        found = self._peek()
        if found != char:
            shown = repr(found) if found else "the end of the file"
            self._fail(f"expected '{char}' at character {self._where()} but found {shown}")
        self.pos += 1

    def _value(self, what: str) -> Any:
        """Decode the next JSON value, reading more until it is complete (doubling, so O(size))."""
        self._peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as error:
                # Only an error at the end of the buffer can be cured by reading more; one further
                # back is a real syntax error (reading on would pull the rest of the file in).
                at_end = error.pos >= len(self.buffer) - _LOOKBACK or error.msg.startswith("Unterminated string")
                if at_end and self._fill(len(self.buffer) - self.pos):
                    continue
                truncated = " (the file ends early)" if at_end else ""
                self._fail(f"{what} is not valid JSON at character {self.dropped + error.pos}: {error.msg}"
                           f"{truncated}")
            # A value that ends exactly at the buffer's end (a number) may continue in the next chunk.
            if end < len(self.buffer) or not self._fill(0):
                self.pos = end
                return value

    def _where(self) -> int:
        return self.dropped + self.pos

    def _fail(self, message: str) -> NoReturn:
        raise UserError(f"{self.name}: {message}")


class _WindowSums:
    """Running per-window sums of step loads: the only state that grows with the trace."""

    def __init__(self, window_steps: int) -> None:
        self.window_steps = window_steps
        self.shape: tuple[int, int] | None = None
        self.num_steps = 0
        self.sums: list[np.ndarray] = []
        self.steps: list[int] = []

    def add(self, loads: np.ndarray) -> None:
        if self.shape is None:
            self.shape = loads.shape
        if self.num_steps % self.window_steps == 0:
            self.sums.append(np.zeros(loads.shape, dtype=np.int64))
            self.steps.append(0)
        self.sums[-1] += loads
        self.steps[-1] += 1
        self.num_steps += 1

    def result(self) -> TraceWindows:
        windows = np.stack(self.sums)
        windows.flags.writeable = False
        return TraceWindows(windows=windows, steps=np.array(self.steps, dtype=np.int64),
                            window_steps=self.window_steps)


def _step_loads(rows: Any, step: int, shape: tuple[int, int] | None, name: str) -> np.ndarray:
    """One step's [L, E] loads as int64, or a UserError saying which step and layer is wrong."""
    where = f"{name}: step {step}"
    if not isinstance(rows, list) or not rows or not all(isinstance(row, list) for row in rows):
        raise UserError(f"{where}: '{_LOAD_KEY}' must be a non-empty list of per-layer lists of loads")
    expected = shape or (len(rows), len(rows[0]))
    if len(rows) != expected[0]:
        raise UserError(f"{where} has {len(rows)} layers but step 0 has {expected[0]}; "
                        "every step must have the same shape")
    for layer, row in enumerate(rows):
        if len(row) != expected[1] or not row:
            raise UserError(f"{where}, layer {layer} has {len(row)} experts but step 0, layer 0 has "
                            f"{expected[1]}; every layer of every step must have the same number of experts")
    try:
        loads = np.array(rows)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, or a number beyond int64
        loads = np.zeros((0,), dtype=object)
    if loads.dtype.kind == "f" and (np.abs(loads) <= _EXACT_FLOAT).all() and (loads == np.round(loads)).all():
        loads = loads.astype(np.int64)
    if loads.dtype.kind not in "iu" or loads.ndim != 2:
        layer, expert = _first_non_count(rows)
        raise UserError(f"{where}, layer {layer}, expert {expert}: load {rows[layer][expert]!r} is not a whole "
                        "number of tokens")
    if (loads < 0).any():
        layer, expert = (int(i) for i in np.argwhere(loads < 0)[0])
        raise UserError(f"{where}, layer {layer}, expert {expert} has load {loads[layer, expert]}; "
                        "loads are token counts and must be >= 0")
    return loads.astype(np.int64, copy=False)


def _first_non_count(rows: list[list[Any]]) -> tuple[int, int]:
    """Where the first load that is not a whole number sits (only called on the error path)."""
    for layer, row in enumerate(rows):
        for expert, value in enumerate(row):
            ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
            if not ok and not (isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT):
                return layer, expert
    return 0, 0


HELDOUT_FRACTION = 0.2  # the last windows of a real trace kept apart for `eval --heldout`
MIN_WINDOWS = 2  # a placement fitted on one window is scored on the next


def heldout_count(num_windows: int) -> int:
    """How many of a trace's last windows are held out: 20%, or none when that is under two."""
    count = int(num_windows * HELDOUT_FRACTION)
    return count if count >= MIN_WINDOWS else 0


@dataclass(frozen=True)
class TraceFileSource:
    """The windows of a trace file: the first ~80% to search on, the last ~20% held out (the future)."""

    path: Path
    window_steps: int | None

    def search(self) -> np.ndarray:
        trace = load_trace(self.path, self.window_steps)
        count = trace.windows.shape[0] - heldout_count(trace.windows.shape[0])
        if count < MIN_WINDOWS:
            raise UserError(f"{self.path.name}: {trace.describe()}; a scenario needs at least {MIN_WINDOWS} "
                            "windows (a placement is scored on the window after the one it was fitted on); "
                            "pass a smaller --window-steps")
        return trace.windows[:count]

    def heldout(self) -> np.ndarray:
        trace = load_trace(self.path, self.window_steps)
        count = heldout_count(trace.windows.shape[0])
        if count == 0:
            needed = int(np.ceil(MIN_WINDOWS / HELDOUT_FRACTION))
            raise UserError(f"{self.path.name}: {trace.describe()} is too short for held-out windows (the last "
                            f"{HELDOUT_FRACTION:.0%}, at least {MIN_WINDOWS}, so at least {needed} windows); "
                            "pass a smaller --window-steps or a longer trace")
        return trace.windows[-count:]

"""What `run` prints besides the run itself: plain progress lines where there is no terminal, and the
closing summary's advice when answers keep being cut off at the output limit (stand-ins, no run)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from candidate_factory import candidate

from harness.cli.run_command import PlainProgress, progress_line, summary
from harness.config.settings import load_config
from harness.search.controller import Tally
from harness.store.journal import Spend

RUN = Path("runs/demo")


def stand_in(tally: Tally, next_attempt: int = 13, best_score: float | None = 0.77124) -> SimpleNamespace:
    """What the progress display and the summary read of a Controller."""
    best = candidate(4, (0,), score=best_score) if best_score is not None else None
    store = SimpleNamespace(next_attempt=next_attempt, path=RUN, config_path=RUN / "config.toml")
    return SimpleNamespace(tally=tally, store=store, population=SimpleNamespace(best=lambda: best),
                           config=load_config(None, {"proposer.max_output_tokens": 2048}))


def test_a_progress_line_says_where_the_run_is_in_one_line() -> None:
    tally = Tally(attempts=12, evaluated=9, valid=7, spent=Spend(1000, 234, 0.0112))
    assert progress_line(stand_in(tally), 30) == "attempt 12/30: 9 evaluated, 7 valid, best 0.7712, 1.2k tokens, $0.01"
    nothing_yet = stand_in(Tally(), next_attempt=1, best_score=None)
    assert progress_line(nothing_yet, 30) == "attempt 0/30: 0 evaluated, 0 valid, best -, 0 tokens, $0.00"


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines += [line for line in text.splitlines() if line]

    def flush(self) -> None:
        pass


def test_plain_progress_shows_the_first_attempt_then_every_n_attempts_or_s_seconds() -> None:
    now = [0.0]
    log = Log()
    progress = PlainProgress(30, log, every=10, seconds=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    tally = Tally()
    shown = []
    for attempts, at in [(1, 1.0), (2, 2.0), (10, 30.0), (11, 31.0), (12, 32.0), (13, 92.0), (14, 93.0)]:
        tally.attempts, now[0] = attempts, at
        before = len(log.lines)
        progress(stand_in(tally, next_attempt=attempts + 1))
        if len(log.lines) > before:
            shown.append(attempts)
    assert shown == [1, 11, 13]  # the first; 10 attempts after it; 60 s after the last line
    assert all(line.startswith(f"attempt {n}/30: ") for line, n in zip(log.lines, shown))


@pytest.mark.parametrize("calls, cut_off, advised", [(9, 3, True), (4, 2, False), (11, 3, False), (3, 3, True)])
def test_the_summary_advises_more_output_tokens_when_many_answers_were_cut_off(calls, cut_off, advised) -> None:
    tally = Tally(attempts=5, evaluated=3, valid=2, calls=calls, cut_off=cut_off)
    controller = stand_in(tally)
    text = summary(controller.store, controller, candidate(0, score=0.7), tally, 12.0)  # type: ignore[arg-type]
    advice = [line for line in text.splitlines() if line.startswith("advice: ")]
    assert bool(advice) == advised
    if advised:
        assert f"{cut_off} of {calls} model calls this session stopped at the output limit" in advice[0]
        assert "max_output_tokens = 2048" in advice[0] and str(RUN / "config.toml") in advice[0]

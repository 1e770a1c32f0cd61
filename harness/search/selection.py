"""Parent-selection rules over an island's ranking (best first). Pure: randomness comes in as `rng`.

- power law: rank r (1 = best) is drawn with weight r^-exponent. Exponent 0 is uniform; larger
  exponents exploit the leaders harder, yet every member keeps a chance, which keeps diversity.
- weighted: sigmoid of the score's distance to the island median (in standard deviations),
  divided by 1 + the number of children already bred from it, so a strong parent that keeps
  producing nothing new gradually yields to others.
- hill climbing: always the island's best.
"""
from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

# How steeply the weighted rule favours above-median programs: one standard deviation above
# the median weighs sigmoid(2) = 0.88 against 0.5 at the median and 0.12 one below.
SIGMOID_SHARPNESS = 2.0


class PowerLaw:
    """Draws a rank with weight r^-exponent; cumulative weights are cached as islands grow."""

    def __init__(self, exponent: float) -> None:
        self._exponent = exponent
        self._cumulative: list[float] = []

    def sample(self, rng: random.Random, n: int) -> int:
        """A 0-based rank in [0, n)."""
        cumulative = self._cumulative
        while len(cumulative) < n:
            rank = len(cumulative) + 1
            cumulative.append((cumulative[-1] if cumulative else 0.0) + rank ** -self._exponent)
        return bisect.bisect_right(cumulative, rng.random() * cumulative[n - 1], 0, n - 1)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def weighted_index(rng: random.Random, scores: Sequence[float], children: Sequence[int]) -> int:
    """A 0-based index drawn by sigmoid(score vs median) / (1 + children); `scores` best first."""
    n = len(scores)
    mid = n // 2
    median = scores[mid] if n % 2 else (scores[mid - 1] + scores[mid]) / 2
    mean = sum(scores) / n
    spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / n) or 1.0
    weights = [_sigmoid(SIGMOID_SHARPNESS * (s - median) / spread) / (1 + c)
               for s, c in zip(scores, children)]
    return rng.choices(range(n), weights=weights)[0]

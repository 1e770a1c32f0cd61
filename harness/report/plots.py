"""The report's three figures, drawn from `harness.report.summary`'s data into PNG files.

Figures are built with matplotlib's object API (`Figure` + savefig, which renders with Agg), never
pyplot: no global state, no display, no backend to select, safe on a headless server or a thread.
matplotlib is the optional `report` extra, so only `report_command` imports this module, lazily.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator

from harness.report.summary import IslandSeries, Lineage, ParetoView

DPI = 110
MAX_HEIGHT_IN = 150.0  # past ~170 generations a lineage is squeezed rather than a huge image


def _colour(island: int) -> str:
    return f"C{island % 10}"


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def plot_progress(series: list[IslandSeries], last_attempt: int, path: Path) -> Path:
    """Running best (solid) and median (dashed) per island, for the combined score and balancedness."""
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    panels = ((top, "combined score", "score", "best_score", "median_score"),
              (bottom, "GPU balancedness (next window)", "balancedness", "best_balancedness", "median_balancedness"))
    for ax, ylabel, own, best, median in panels:
        for s in series:
            x = [*s.attempts, max(last_attempt, s.attempts[-1])]  # carry each line to the last attempt
            for field, style, label in ((best, "-", f"island {s.island}"), (median, "--", None)):
                values = getattr(s, field)
                ax.step(x, [*values, values[-1]], where="post", linestyle=style, color=_colour(s.island),
                        label=label)
            ax.plot(s.attempts, getattr(s, own), "o", markersize=3, alpha=0.4, color=_colour(s.island))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    top.set_title("Progress per island: best so far (solid), median so far (dashed), each valid candidate (dots)")
    top.legend(loc="best", fontsize="small")
    bottom.set_xlabel("attempt")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def plot_pareto(view: ParetoView, path: Path) -> Path:
    """Balancedness against runtime (log x): candidates, their Pareto front, the seed, best and baselines."""
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    for island in sorted({p.island or 0 for p in view.dots}):  # candidates always have an island
        dots = [p for p in view.dots if p.island == island]
        ax.scatter([p.runtime_ms for p in dots], [p.balancedness for p in dots], s=14, alpha=0.5,
                   color=_colour(island), label=f"candidates, island {island}")
    if view.front:
        ax.step([p.runtime_ms for p in view.front], [p.balancedness for p in view.front], where="post",
                color="0.2", linewidth=1, label="Pareto front")
        for p in view.front:
            ax.annotate(p.label, (p.runtime_ms, p.balancedness), xytext=(3, 3), textcoords="offset points",
                        fontsize="x-small")
    if view.seed:
        ax.scatter([view.seed.runtime_ms], [view.seed.balancedness], marker="*", s=220, color="black",
                   zorder=3, label="seed")
    if view.best:
        ax.scatter([view.best.runtime_ms], [view.best.balancedness], s=160, facecolors="none",
                   edgecolors="red", linewidths=1.5, zorder=3, label=f"best ({view.best.label})")
    for p in view.anchors:
        ax.scatter([p.runtime_ms], [p.balancedness], marker="D", s=50, color="0.45", zorder=3)
        ax.annotate(p.label, (p.runtime_ms, p.balancedness), xytext=(5, -10), textcoords="offset points",
                    fontsize="small", color="0.3")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 10, not 10^1
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # labels minor ticks on short spans only
    ax.set_xlabel("runtime per call (ms, log scale)")
    ax.set_ylabel("GPU balancedness on the next window")
    ax.set_title("Balancedness against runtime; baselines (diamonds) on the run's suite")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def _positions(lineage: Lineage) -> dict[int, tuple[float, float]]:
    """Chain nodes down the middle column, one layer per generation; mates to their right."""
    taken: dict[int, int] = {}
    where = {}
    for node in lineage.nodes:
        column = 0 if node.on_chain else taken.get(node.layer, 0) + 1
        if not node.on_chain:
            taken[node.layer] = column
        where[node.id] = (float(column), -float(node.layer))
    return where


def _short(name: str, limit: int = 34) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "~"


def plot_lineage(lineage: Lineage, path: Path) -> Path:
    """The seed at the top, the best at the bottom, each node labelled with its id, NAME and score."""
    where = _positions(lineage)
    layers = max(n.layer for n in lineage.nodes) + 1
    columns = max(x for x, _ in where.values()) + 1
    fig = Figure(figsize=(3.6 + 2.8 * columns, min(MAX_HEIGHT_IN, 1.0 + 0.85 * layers)), layout="constrained")
    ax = fig.subplots()
    best_id = next(n.id for n in reversed(lineage.nodes) if n.on_chain)
    boxes = {}
    for n in lineage.nodes:
        face = "#ffd9d9" if n.id == best_id else ("#dde8f7" if n.on_chain else "0.92")
        boxes[n.id] = ax.text(*where[n.id], f"#{n.id} {_short(n.name)}\n{n.score:.4f}", ha="center",
                              va="center", fontsize="small",
                              bbox={"boxstyle": "round,pad=0.35", "facecolor": face, "edgecolor": "0.5"})
    for parent, child in lineage.edges:  # clipped to the two boxes, so every arrowhead shows
        ax.annotate("", xy=where[child], xytext=where[parent], arrowprops={
            "arrowstyle": "->", "color": "0.4", "shrinkA": 2, "shrinkB": 2,
            "patchA": boxes[parent].get_bbox_patch(), "patchB": boxes[child].get_bbox_patch()})
    ax.set_xlim(-0.7, columns - 0.3)
    ax.set_ylim(-(layers - 1) - 0.6, 0.6)
    ax.set_axis_off()
    mates = "; crossover mates to the right" if columns > 1 else ""
    ax.set_title(f"Lineage of the best program (seed at the top{mates})", fontsize="medium")
    return _save(fig, path)

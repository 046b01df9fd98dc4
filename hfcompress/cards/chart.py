"""The chart a model card embeds: dev score against size on disk (and against CPU latency) for source and result.

Drawn with matplotlib's Agg canvas (no pyplot, no global state) into `compression_chart.png`, only when the run
measured the score and size of both models. Without matplotlib the card simply has no chart.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger("hfcompress")

CHART_NAME = "compression_chart.png"


def chart_points(report: dict) -> dict | None:
    """{label: (score, size_mb, latency_ms or None)} for source and result, or None when one was not measured."""
    points = {}
    latency_key = None
    for side in ("source", "result"):
        entry = report.get(side) or {}
        score, size = entry.get("score"), entry.get("size_bytes")
        if not isinstance(score, (int, float)) or not size:
            return None
        latency = entry.get("latency_ms") or {}
        latency_key = latency_key or next(iter(sorted(latency, key=_batch_size)), None)
        points[entry.get("label") or side] = (score, size / 1e6, latency.get(latency_key))
    if any(latency is None for _, _, latency in points.values()):
        points = {label: (score, size, None) for label, (score, size, _) in points.items()}
    info = report.get("task_info") or {}
    score_name = f"{info['score']} (lower is better)" if info.get("lower_is_better") else "dev score"
    return {"points": points, "latency_key": latency_key, "task": report.get("task", ""), "score_name": score_name}


def write_chart(report: dict, output_dir: str | Path) -> Path | None:
    """Write the chart into `output_dir` and return its path; None without two measured models or matplotlib."""
    data = chart_points(report)
    if data is None:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed, so the model card has no chart (pip install matplotlib).")
        return None
    points = data["points"]
    with_latency = all(latency is not None for _, _, latency in points.values())
    figure = Figure(figsize=(9 if with_latency else 5, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if with_latency else 1, squeeze=False)[0]
    panels = [(axes[0], 1, "size on disk (MB)")]
    if with_latency:
        batch = data["latency_key"].replace("_", " ")
        panels.append((axes[1], 2, f"CPU latency, {batch} (ms)"))
    for ax, index, xlabel in panels:
        (sx, sy), (rx, ry) = [(values[index], values[0]) for values in points.values()]
        ax.annotate("", xy=(rx, ry), xytext=(sx, sy), arrowprops={"arrowstyle": "->", "color": "0.6"})
        for (label, values), color in zip(points.items(), ("tab:blue", "tab:orange")):
            ax.scatter([values[index]], [values[0]], s=60, color=color, zorder=3)
            ax.annotate(label, (values[index], values[0]), textcoords="offset points", xytext=(6, 6), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{data['task']} {data.get('score_name', 'dev score')}")
        ax.set_xlim(left=0, right=max(sx, rx) * 1.25)
        low, high = min(sy, ry), max(sy, ry)
        pad = max(0.02, (high - low) * 0.5)
        ax.set_ylim(low - pad, high + pad)
        ax.grid(alpha=0.3)
    better = "lower" if "lower is better" in data.get("score_name", "") else "higher"
    figure.suptitle(f"Source vs compressed: {better} and further left is better", fontsize=10)
    figure.tight_layout()
    path = Path(output_dir) / CHART_NAME
    figure.savefig(path, format="png", metadata={"Software": None})  # no version stamp: same run, same bytes
    return path


def _batch_size(key: str) -> int:
    try:
        return int(key.rsplit("_", 1)[-1])
    except ValueError:
        return 0

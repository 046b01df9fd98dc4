"""What `hfcompress benchmark` writes: a table on screen, benchmark.json, benchmark.csv and two PNG charts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

AXIS_TITLES = {
    "batch_1": "CPU latency, batch 1 (ms, median)",
    "decode_per_token": "ms per decoded token (median)",
    "prefill_batch_1": "prefill latency (ms, median)",
}
CHARTS = {"metric_vs_latency.png": "latency", "metric_vs_size.png": "size"}


def headline_latency(row: dict) -> tuple[str, float] | None:
    """The latency a chart uses: batch 1 for classifiers, ms per decoded token for causal LMs."""
    latency = row.get("latency") or {}
    for key in ("batch_1", "decode_per_token", "prefill_batch_1"):
        if key in latency:
            return key, latency[key]["median"]
    return None


def flat_row(row: dict) -> dict:
    """One CSV line: plain columns, latency as median/min/max per measurement."""
    out = {k: row.get(k) for k in ("label", "model", "backend", "score", "parameters", "size_bytes", "sparsity",
                                   "memory_bytes")}  # fmt: skip
    for name, value in (row.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            out[f"metric_{name}"] = value
    for key, value in (row.get("latency") or {}).items():
        if key == "speedup":
            for measurement, ratio in value.items():
                out[f"speedup_{measurement}"] = ratio["median"]
            continue
        for stat in ("median", "min", "max"):
            out[f"{key}_ms_{stat}"] = value[stat]
    return out


def write_files(result: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rows = [flat_row(row) for row in result["rows"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "benchmark.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    written = [out / "benchmark.json", out / "benchmark.csv"]
    for name, axis in CHARTS.items():
        if draw_chart(result, axis, out / name):
            written.append(out / name)
    return written


def pareto_front(points: list[tuple[float, float]], lower_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both cost (x, lower is better) and metric (y)."""

    def better_or_equal(a, b):
        return a <= b if lower_is_better else a >= b

    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            ox <= x and better_or_equal(oy, y) and (ox < x or oy != y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def draw_chart(result: dict, axis: str, path: Path) -> bool:
    """Metric against latency or size on disk, a labelled point per model, the Pareto front joined by a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points, labels, unit = [], [], ""
    for row in result["rows"]:
        if row.get("score") is None:
            continue
        if axis == "size":
            x, unit = row["size_bytes"] / 1e6, "size on disk (MB)"
        else:
            found = headline_latency(row)
            if found is None:
                continue
            key, x = found
            unit = AXIS_TITLES[key]
        points.append((x, row["score"]))
        labels.append(row["label"])
    if not points:
        return False
    lower = result["task"]["lower_is_better"]
    figure = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="#1f77b4", zorder=3)
    front = pareto_front(points, lower)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="#d62728", linestyle="--",
            marker="o", markersize=11, markerfacecolor="none", zorder=2, label="Pareto front")  # fmt: skip
    for (x, y), label in zip(points, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(unit)
    score = result["task"]["score_name"]
    ax.set_ylabel(f"{score} ({'lower' if lower else 'higher'} is better)")
    ax.set_title(f"{result['task']['name']}: {score} against {'latency' if axis == 'latency' else 'size'}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return True


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    setup = result["setup"]
    table = Table(title=f"Benchmark on {result['task']['name']}")
    columns = ["model", result["task"]["score_name"], "parameters", "size", "sparsity", "memory"]
    keys = list(dict.fromkeys(k for row in result["rows"] for k in (row.get("latency") or {}) if k != "speedup"))
    columns += [_latency_title(k) for k in keys] + ([f"speed-up {keys[0].replace('_', ' ')}"] if keys else [])
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result["rows"]:
        latency = row.get("latency") or {}
        cells = [
            row["label"],
            "not measured" if row.get("score") is None else f"{row['score']:.4f}",
            f"{row['parameters'] / 1e6:.2f} M" if row.get("parameters") else "not recorded",
            f"{row['size_bytes'] / 1e6:.1f} MB",
            "" if row.get("sparsity") is None else f"{row['sparsity']:.2f}",
            f"{row['memory_bytes'] / 1e6:.1f} MB" if row.get("memory_bytes") else "",
        ]
        cells += [_latency_cell(k, latency.get(k)) for k in keys]
        if keys:
            ratio = (latency.get("speedup") or {}).get(keys[0])
            cells.append(f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "")
        table.add_row(*cells)
    console = Console(width=150)
    console.print(table)
    console.print(f"Latency: {setup['statistic']}; {setup['threads']} threads; baseline {result['rows'][0]['label']}.")
    for warning in result["warnings"]:
        console.print(f"[yellow]Warning:[/yellow] {warning}")


def _latency_title(key: str) -> str:
    if key == "decode_per_token":
        return "decode tokens/s"
    return key.replace("_", " ") + " (ms)"


def _latency_cell(key: str, value: dict | None) -> str:
    if not value:
        return ""
    if key == "decode_per_token":  # shown as tokens/s: higher is faster; the spread flips accordingly
        return f"{1000 / value['median']:.1f} ({1000 / value['max']:.1f}-{1000 / value['min']:.1f})"
    return f"{value['median']:.2f} ({value['min']:.2f}-{value['max']:.2f})"

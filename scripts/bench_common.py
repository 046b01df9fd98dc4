"""Shared by the benchmark scripts: running the hfcompress CLI, and interleaved latency of a set of folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hfcompress(*args) -> None:
    command = [sys.executable, "-m", "hfcompress", *map(str, args)]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def add_latency(results: dict, folders: dict, rounds: int, out: Path) -> None:
    """Measure every folder in one process, interleaved over `rounds` (bench_lm_latency.py); store per model."""
    latency = out / "latency.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_lm_latency.py"), *map(str, folders.values()),
                    "--rounds", str(rounds), "--output-file", str(latency)], check=True)  # fmt: skip
    timings = json.loads(latency.read_text())["results"]
    for name, folder in folders.items():
        results[name]["latency"] = timings.get(str(folder))

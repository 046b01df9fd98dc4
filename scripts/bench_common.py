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


def clm_parser(doc: str, out: str):
    """The options every script working on bench_causal_lm.py's teacher shares: --clm, --out, --only, --samples,
    --block-size."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clm", default="runs/bench-clm", help="Output folder of scripts/bench_causal_lm.py.")
    parser.add_argument("--out", default=out)
    parser.add_argument("--only", default=None, help="Comma-separated run names (default: all).")
    parser.add_argument("--samples", type=int, default=128, help="Calibration blocks.")
    parser.add_argument("--block-size", type=int, default=128)
    return parser


def clm_data(clm: Path, block_size: int) -> list:
    """The data flags of a command on that teacher: its training text and the held-out 10% of valid.txt."""
    return ["--task", "causal-lm", "--train-file", clm / "train.txt", "--validation-file", clm / "heldout.txt",
            "--block-size", block_size, "--latency-runs", "0"]  # fmt: skip

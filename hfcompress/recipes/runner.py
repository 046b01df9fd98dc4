"""Run a checked recipe step by step, skipping steps that are already done with the same settings and input.

OUT/recipe.json records, per step folder, a fingerprint of its command and of everything it reads (the previous
step's fingerprint, or the files of an external model or data folder). A rerun skips a step whose folder is
complete and whose fingerprint is unchanged, resumes a training step from the newest checkpoint its unfinished
run left, and runs again (replacing its folder) a step whose settings or input changed, and so every step after it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from ..errors import HfcompressError, UsageError
from ..outputs import staging_dir
from ..training import last_checkpoint
from .recipe import TRAINING_KINDS, Recipe, Step, command_module, plan, read_recipe

logger = logging.getLogger("hfcompress")
RECORD = "recipe.json"


def check_recipe_dir(out: Path) -> dict:
    """OUT is new, empty, or an earlier run of a recipe (never another command's folder); returns its record."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"Output path '{out}' exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / RECORD).is_file():
            raise UsageError(
                f"'{out}' is not empty and holds no {RECORD}, so it is no recipe's folder; choose a new --output-dir."
            )
        try:
            return json.loads((out / RECORD).read_text(encoding="utf-8"))
        except ValueError:
            raise UsageError(
                f"'{out / RECORD}' is damaged (not JSON); move it away to start the recipe again."
            ) from None
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"Cannot write to '{out}': '{existing}' is not writable.")
    return {}


def _path_fingerprint(path: Path) -> str:
    """Names, sizes and modification times of the files under `path`: cheap, and changes when they do."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(path) if file != path else file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()
        )
    return digest.hexdigest()[:16]


def fingerprint(step: Step, out: Path, done: dict[str, str]) -> str:
    """The step's command plus the identity of what it reads: an earlier step's fingerprint or local files."""
    parts = {"kind": step.kind, "argv": step.argv, "reads": {}}
    for value in step.argv:
        if value in done:
            parts["reads"][value] = done[value]
        elif not value.startswith("-") and Path(value).exists() and out.resolve() not in Path(value).resolve().parents:
            parts["reads"][value] = _path_fingerprint(Path(value))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _write_record(out: Path, record: dict) -> None:
    tmp = out / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / RECORD)


def _target(step: Step, out: Path) -> Path:
    return out / (step.folder if step.writes_folder else f"{step.folder}.json")


def _arguments_for_rerun(step: Step, out: Path, same: bool) -> tuple[list[str], str]:
    """The step's arguments, plus what a rerun needs: resume an unfinished training, or replace an old result."""
    target, argv = _target(step, out), list(step.argv)
    if step.kind == "evaluate":
        target.unlink(missing_ok=True)  # the recipe's own file from an older run
        return argv, "run"
    if step.kind == "push":
        return argv, "run"
    staging = staging_dir(target)
    if step.kind in TRAINING_KINDS and same and last_checkpoint(staging):
        return argv + ["--resume_from_checkpoint", "true"], "resumed"
    if target.exists() or staging.exists():
        return argv + ["--overwrite_output_dir", "true"], "run again"
    return argv, "run"


def run_step(step: Step, argv: list[str]) -> None:
    from ..training import TrainingStopped

    try:
        command_module(step.kind).run(argv)
    except TrainingStopped as err:
        err.args = (f"step {step.folder}: {err} Rerunning the same `hfcompress run` command resumes it there.",)
        raise
    except HfcompressError as err:
        err.args = (f"step {step.folder} failed: {err} Finished steps are kept; rerun the recipe to continue.",)
        raise


def run_recipe(name_or_path: str, output_dir: str | Path, overrides: dict | None = None, check: bool = False) -> dict:
    """Check the whole recipe, then run its steps into OUTPUT_DIR/NN-kind; returns the record written."""
    out = Path(output_dir)
    record = check_recipe_dir(out)
    recipe = plan(read_recipe(name_or_path), out, overrides)
    if check:
        _print_plan(recipe)
        return {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(recipe.text, encoding="utf-8")
    previous = record.get("steps", {})
    record = {"recipe": recipe.source, "overrides": overrides or {}, "steps": {}, "final": None}
    done: dict[str, str] = {}
    for step in recipe.steps:
        target = _target(step, out)
        key = fingerprint(step, out, done)
        if step.writes_folder:
            done[str(out / step.folder)] = key
        old = previous.get(step.folder, {})
        same = old.get("fingerprint") == key
        if same and old.get("status") == "done" and target.exists():
            status = "skipped"
            print(f"Step {step.index}/{len(recipe.steps)} {step.folder}: done earlier with these settings, skipped.")
        else:
            argv, status = _arguments_for_rerun(step, out, same)
            print(f"Step {step.index}/{len(recipe.steps)} {step.folder}: {status} (reads {step.inputs['model']})")
            record["steps"][step.folder] = {"fingerprint": key, "status": "started", "argv": argv}
            _write_record(out, record)
            started = time.monotonic()
            run_step(step, argv)
            # Wall time of this run of the step (a resumed step: since the resume); a skipped step keeps its own.
            record["steps"][step.folder]["seconds"] = round(time.monotonic() - started, 1)
        record["steps"][step.folder] = {**record["steps"].get(step.folder, old), "fingerprint": key, "status": "done",
                                        "ran": status}  # fmt: skip
        if step.writes_folder:
            record["final"] = str(target)
        _write_record(out, record)
    record["seconds"] = round(sum(s.get("seconds", 0.0) for s in record["steps"].values()), 1)
    record["summary"] = summary_rows(recipe, out)
    _write_record(out, record)
    _print_summary(record, recipe)
    return record


def _print_plan(recipe: Recipe) -> None:
    from ..cli.common import command_line

    print(f"Recipe {recipe.source}: {len(recipe.steps)} steps, all checked.")
    for step in recipe.steps:
        print(f"  {step.folder}: {command_line(step.argv, step.kind)}")


def summary_rows(recipe: Recipe, out: Path) -> list[dict]:
    """One row per step that measured something: its score, parameters, size and latency."""
    from ..report import read_report

    rows = []
    for step in recipe.steps:
        if step.kind == "push":
            continue
        if step.writes_folder:
            entry = (read_report(out / step.folder) or {}).get("result") or {}
        else:
            path = out / f"{step.folder}.json"
            entry = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        latency = entry.get("latency_ms") or {}
        rows.append({
            "step": step.folder,
            "score": entry.get("score"),
            "parameters": entry.get("parameters") or None,
            "size_bytes": entry.get("size_bytes"),
            "latency_ms": latency.get("batch_1") or latency.get("prefill_batch_1"),
        })  # fmt: skip
    return rows


def _print_summary(record: dict, recipe: Recipe) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Recipe {Path(recipe.source).stem}")
    for column in ("step", "ran", "score", "parameters", "size on disk", "latency batch 1", "wall time"):
        table.add_column(column, justify="left" if column in ("step", "ran") else "right")
    for row in record["summary"]:
        table.add_row(
            row["step"],
            record["steps"][row["step"]]["ran"],
            "not measured" if row["score"] is None else f"{row['score']:.4f}",
            "" if not row["parameters"] else f"{row['parameters'] / 1e6:.2f} M",
            "" if not row["size_bytes"] else f"{row['size_bytes'] / 1e6:.1f} MB",
            "" if not row["latency_ms"] else f"{row['latency_ms']:.1f} ms",
            _minutes(record["steps"][row["step"]].get("seconds")),
        )
    console = Console(width=124)
    console.print(table)
    console.print(f"Wall time of the steps: {_minutes(record['seconds'])}.")
    if record.get("final"):
        console.print(f"Final model: {record['final']} (its compression.json and README.md cover every step).")


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min"

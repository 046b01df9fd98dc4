"""Atomic output folders: a run writes into a hidden sibling and renames it into place only when it is complete.

`OUT` is written as `.OUT.partial` (a lock file in it names the process writing it) and becomes `OUT` once the
model, report and card are all there, so a killed run never leaves something that looks finished, and two runs
cannot mix their files. Checkpoints of an unfinished run stay in `.OUT.partial`, where `--resume_from_checkpoint`
finds them. `--overwrite_output_dir` replaces an existing `OUT` as a whole, after the new one is complete.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
from pathlib import Path

from .errors import HfcompressError, UsageError

LOCK = ".hfcompress.lock"
_FINAL: dict[str, Path] = {}  # staging folder -> the folder it becomes
_DISPOSABLE: set[str] = set()  # staging folders of runs that cannot resume (quantize): removed if unfinished


def staging_dir(final: str | Path) -> Path:
    final = Path(final)
    return final.parent / f".{final.name}.partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer(staging: Path) -> int | None:
    try:
        return int(json.loads((staging / LOCK).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def begin_output(
    final: str | Path, overwrite: bool, resuming: bool, main_process: bool = True, resumable: bool = True
) -> Path:
    """Create (or, when resuming, reuse) the staging folder of `final`, locked by this process; returns it."""
    final = Path(final)
    staging = staging_dir(final)
    if not _FINAL:
        atexit.register(abandon_unused)
    _FINAL[str(staging)] = final
    if not resumable:
        _DISPOSABLE.add(str(staging))
    if not main_process:
        return staging
    if staging.exists():
        pid = _writer(staging)
        if pid is None or (pid != os.getpid() and _alive(pid)):
            raise UsageError(
                f"Another hfcompress run{f' (process {pid})' if pid else ''} is writing '{final}' (in '{staging}'); "
                "wait for it or choose another --output-dir."
            )
        if not resuming:
            if not overwrite:
                raise UsageError(
                    f"An unfinished run left '{staging}'; resume it with --resume_from_checkpoint true, or pass "
                    "--overwrite_output_dir to start again."
                )
            shutil.rmtree(staging)
    try:
        staging.mkdir(parents=True, exist_ok=resuming)
    except FileExistsError:
        raise UsageError(f"Another hfcompress run is writing '{final}'; choose another --output-dir.") from None
    (staging / LOCK).write_text(json.dumps({"pid": os.getpid(), "final": str(final)}))
    return staging


def final_dir(path: str | Path) -> Path:
    """The folder a staging folder becomes (a folder not being staged is its own final folder)."""
    return _FINAL.get(str(Path(path)), Path(path))


def replace_paths(text: str, staging: Path) -> str:
    """Text written while staging names the final folder, not the staging one (as given, absolute, or by name)."""
    final = final_dir(staging)
    for old, new in ((staging.resolve(), final.resolve()), (staging, final), (staging.name, final.name)):
        text = text.replace(str(old), str(new))
    return text


def abandon_unused() -> None:
    """At exit: remove staging folders this process created and never wrote anything into (a run that failed
    its checks); one with checkpoints or partial results stays, resumable."""
    for name in list(_FINAL):
        staging = Path(name)
        if staging.is_dir() and _writer(staging) == os.getpid():
            if name in _DISPOSABLE or {p.name for p in staging.iterdir()} <= {LOCK}:
                shutil.rmtree(staging, ignore_errors=True)


def commit_output(staging: str | Path, overwrite: bool) -> Path:
    """Rename the complete staging folder into place; an existing final folder is replaced only with overwrite."""
    staging = Path(staging)
    final = final_dir(staging)
    if final == staging:
        return final
    for path in staging.rglob("*"):
        if path.name in ("training_args.json", "compression.json", "README.md"):
            path.write_text(replace_paths(path.read_text(encoding="utf-8"), staging), encoding="utf-8")
    old = None
    if final.exists():
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        elif overwrite:
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
        else:
            raise HfcompressError(
                f"'{final}' appeared while this run was writing; the finished result is in '{staging}'."
            )
    (staging / LOCK).unlink(missing_ok=True)
    staging.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _FINAL.pop(str(staging), None)
    return final

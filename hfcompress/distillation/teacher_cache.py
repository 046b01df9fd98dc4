"""The teacher's outputs on the training set, computed once and reused by every student distilled from it.

A cache folder holds `teacher_outputs.safetensors` and `fingerprint.json`. Classifiers keep the logits of each
training row; causal LMs keep, for each real token, the k largest log-probabilities and their token ids (the
whole vocabulary would not fit). The fingerprint hashes the teacher (weights, dtype and config), the tokenizer's
vocabulary, the tokenized training data and the max length (or block size): a folder whose fingerprint matches
is reused, one that does not is refused, never silently rebuilt. Outputs are cached at temperature 1, so runs with
other temperatures or loss weights share one cache. A max length unknown on one side (the Trainer opening a cache
itself, as `prune --teacher` does) is not compared; the data hash still sees any change in truncation. The
teacher is cast to `--teacher-dtype` before the cache is built, as for training, and that dtype is recorded on its
own, so a cache of a float32 teacher is refused for a bfloat16 run with the dtype named.

Training batches find their rows by content, a digest of each row's real input ids, so the Trainer's shuffling,
column filtering and padding need no change; identical inputs share one cached output, as they would share the
teacher's. Held-out batches (evaluation) are not cached and need the live teacher. The file is written a batch
at a time (memory holds one batch) and read row by row from disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError

OUTPUTS_FILE = "teacher_outputs.safetensors"
FINGERPRINT_FILE = "fingerprint.json"
FORMAT = 1
LABEL_COLUMNS = ("labels", "label", "label_ids")
# Config entries that say how a model was saved or is called, not what it computes.
CONFIG_NOISE = {"transformers_version", "architectures", "id2label", "label2id", "problem_type", "finetuning_task",
                "use_cache", "output_hidden_states", "output_attentions", "return_dict"}  # fmt: skip
PARTS = {
    "teacher": "the teacher (weights, dtype or config)",
    "teacher_dtype": "the teacher's dtype",
    "tokenizer": "the tokenizer's vocabulary",
    "max_length": "the max length",
    "data": "the tokenized training data",
    "outputs": "the kind of cached outputs",
}


@dataclass
class CachedOutputs:
    """Stands in for the teacher's model output: `logits` (classifiers) or top-k `log_probs` and `ids`."""

    logits: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    hidden_states = None
    attentions = None


def check_cache_settings(args, token_level: bool = False) -> None:
    """The losses a cache can serve: only the soft-target loss, and for causal LMs only the forward KL."""
    live = [name for name in ("hidden_weight", "attention_weight", "cosine_weight") if getattr(args, name) > 0]
    if live:
        one = len(live) == 1
        raise UsageError(
            f"--teacher-cache holds only the teacher's outputs, but {' and '.join(live)} "
            f"{'needs' if one else 'need'} the live teacher; set {'it' if one else 'them'} to 0 or drop "
            "--teacher-cache."
        )
    if token_level and args.divergence != "forward_kl":
        raise UsageError(
            f"--teacher-cache keeps a causal LM teacher's top-k tokens, not its whole distribution, so it supports "
            f"--divergence forward_kl only, not {args.divergence}."
        )


def row_keys(batch: dict) -> list[bytes]:
    """A 16-byte digest of each row's real input ids (where the attention mask is 1), whatever the padding."""
    if "input_ids" not in batch:
        raise UsageError("The teacher cache finds rows by their input_ids, and this batch has none.")
    ids = batch["input_ids"].detach().cpu().to(torch.int64)
    mask = batch.get("attention_mask")
    mask = mask.detach().cpu().bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
    return [hashlib.blake2b(row[keep].numpy().tobytes(), digest_size=16).digest() for row, keep in zip(ids, mask)]


# -- fingerprint ------------------------------------------------------------------------------------------------


def input_columns(dataset, teacher) -> list[str]:
    """The dataset's columns the teacher reads (its forward's arguments), labels excluded."""
    import inspect

    columns = dataset.column_names if hasattr(dataset, "column_names") else list(dataset[0])
    params = inspect.signature(teacher.forward).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return sorted(c for c in columns if (takes_any or c in params) and c not in LABEL_COLUMNS)


def _teacher_digest(teacher) -> str:
    digest = hashlib.sha256(type(teacher).__name__.encode())
    config = {k: v for k, v in teacher.config.to_dict().items() if k not in CONFIG_NOISE and not k.startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def _dtype_name(teacher) -> str | None:
    from .teacher_placement import floating_dtype

    dtype = floating_dtype(teacher)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _tokenizer_digest(tokenizer) -> str | None:
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return None
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()


def _column_arrays(dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(row lengths, all values) of a column of token lists, as int64."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        import pyarrow.compute as pc

        array = dataset.with_format("arrow")[column]  # honours a select()/shuffle() index mapping
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        values = pc.list_flatten(array).to_numpy(zero_copy_only=False)
        return lengths.astype(np.int64), values.astype(np.int64)
    rows = [np.asarray(dataset[i][column], dtype=np.int64).reshape(-1) for i in range(len(dataset))]
    return np.array([len(r) for r in rows], dtype=np.int64), np.concatenate(rows) if rows else np.zeros(0, np.int64)


def _data_digest(dataset, columns: list[str]) -> tuple[str, int]:
    """A hash of the rows the teacher reads, in order, and the longest row (in input ids)."""
    digest = hashlib.sha256(f"{len(dataset)} rows".encode())
    longest = 0
    for column in columns:
        lengths, values = _column_arrays(dataset, column)
        digest.update(column.encode())
        digest.update(lengths.tobytes())
        digest.update(values.tobytes())
        if column == "input_ids":
            longest = int(lengths.max(initial=0))
    return digest.hexdigest(), longest


def fingerprint(teacher, tokenizer, dataset, max_length: int | None = None, top_k: int = 64) -> dict:
    """What the cached outputs depend on: `parts` are compared on reuse, `info` only describes the cache."""
    from .distillation_trainer import _vocab_size, is_causal_lm

    if len(dataset) == 0:
        raise UsageError("The training set is empty; there is nothing to cache.")
    columns = input_columns(dataset, teacher)
    if "input_ids" not in columns:
        raise UsageError("The teacher cache needs an input_ids column in the training set.")
    data, longest = _data_digest(dataset, columns)
    causal = is_causal_lm(teacher)
    vocab = _vocab_size(teacher.config)
    k = min(top_k, vocab) if causal else None
    parts = {
        "teacher": _teacher_digest(teacher),
        "teacher_dtype": _dtype_name(teacher),  # --teacher-dtype: the dtype the outputs were computed in
        "tokenizer": _tokenizer_digest(tokenizer),
        "max_length": max_length,
        "data": data,
        "outputs": f"top-{k} log-probs" if causal else "logits",
    }
    info = {"teacher": str(getattr(teacher, "name_or_path", "") or type(teacher).__name__), "rows": len(dataset),
            "columns": columns, "kind": "top_k" if causal else "logits", "top_k": k, "longest": longest,
            "vocab_size": vocab, "num_labels": None if causal else teacher.config.num_labels}  # fmt: skip
    return {"format": FORMAT, "parts": parts, "info": info}


def stale_parts(cached: dict, current: dict) -> list[str]:
    """The parts that differ, described for a user; a max length unknown on one side is not compared."""
    if cached.get("format") != FORMAT:
        return ["the cache format (written by another hfcompress version)"]
    old, new = cached.get("parts", {}), current["parts"]
    changed = []
    for name, text in PARTS.items():
        if name in ("max_length", "teacher_dtype") and (old.get(name) is None or new.get(name) is None):
            continue  # teacher_dtype: caches written before it was recorded (the teacher digest still sees dtypes)
        if name == "teacher" and old.get("teacher_dtype", new.get("teacher_dtype")) != new.get("teacher_dtype"):
            continue  # a cast changes every weight's bytes: the dtype alone is named, below
        if old.get(name) != new.get(name):
            shown = ("max_length", "outputs", "teacher_dtype")
            detail = f" ({old.get(name)} then, {new.get(name)} now)" if name in shown else ""
            changed.append(text + detail)
    return changed


# -- writing ----------------------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.uint8: "U8"}


class _StreamingSafetensors:
    """A safetensors file whose tensors are filled a block of rows at a time, so memory never holds them whole.

    The header (names, dtypes, shapes, offsets) is written first, padded to 8 bytes as safetensors does; each
    `write` then puts rows at their place in the preallocated data section.
    """

    def __init__(self, path: Path, specs: dict[str, tuple[torch.dtype, tuple[int, ...]]], metadata: dict):
        header, self.layout, offset = {"__metadata__": metadata}, {}, 0
        for name, (dtype, shape) in specs.items():
            size = math.prod(shape) * dtype.itemsize
            header[name] = {
                "dtype": SAFETENSORS_DTYPES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            self.layout[name] = (offset, size // shape[0], dtype)
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.file.write(len(text).to_bytes(8, "little") + text)
        self.base = 8 + len(text)
        self.file.truncate(self.base + offset)

    def write(self, name: str, start_row: int, rows: torch.Tensor) -> None:
        offset, row_bytes, dtype = self.layout[name]
        self.file.seek(self.base + offset + start_row * row_bytes)
        self.file.write(rows.detach().cpu().to(dtype).contiguous().numpy().tobytes())

    def close(self) -> None:
        self.file.close()


def _replace_atomically(path: Path, write) -> None:
    """`write(temporary path)`, then rename over `path`: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_cache(folder, teacher, dataset, collator, fprint: dict, batch_size: int = 8, device=None,
                progress: bool = True) -> TeacherCache:  # fmt: skip
    """Run the teacher once over `dataset`, in order, and write its outputs and `fprint` into `folder`."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FINGERPRINT_FILE).unlink(missing_ok=True)  # until the new outputs are complete, the folder is no cache
    info = fprint["info"]
    columns, rows, k = info["columns"], info["rows"], info["top_k"]
    if hasattr(dataset, "select_columns"):
        dataset = dataset.select_columns(columns)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    device = torch.device(device) if device is not None else next(teacher.parameters()).device
    teacher.eval()
    teacher.to(device)
    started = time.perf_counter()

    def write(path: Path) -> None:
        writer, start = None, 0
        try:
            for batch in tqdm(loader, desc="Caching teacher outputs", disable=not progress):
                keys = row_keys(batch)
                inputs = {name: batch[name].to(device) for name in columns if name in batch}
                with torch.no_grad():
                    logits = teacher(**inputs).logits.float()
                if writer is None:
                    specs = {"keys": (torch.uint8, (rows, 16))}
                    if k is None:
                        specs["logits"] = (torch.float32, (rows, logits.shape[-1]))
                    else:
                        specs["log_probs"] = (torch.float32, (rows, info["longest"], k))
                        specs["ids"] = (torch.int32, (rows, info["longest"], k))
                    writer = _StreamingSafetensors(path, specs, {"format": "hfcompress teacher cache"})
                writer.write("keys", start, torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8))
                if k is None:
                    writer.write("logits", start, logits)
                else:
                    log_probs, ids = _top_k_rows(logits, batch.get("attention_mask"), k, info["longest"])
                    writer.write("log_probs", start, log_probs)
                    writer.write("ids", start, ids)
                start += len(keys)
        finally:
            if writer is not None:
                writer.close()
        if start != rows:
            raise UsageError(f"The collator gave {start} rows for a training set of {rows}; it must keep every row.")

    _replace_atomically(folder / OUTPUTS_FILE, write)
    info["build_seconds"] = round(time.perf_counter() - started, 3)
    info["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(fprint, indent=2) + "\n"
    _replace_atomically(folder / FINGERPRINT_FILE, lambda path: path.write_text(text, encoding="utf-8"))
    return TeacherCache(folder, fprint, status="built")


def _top_k_rows(logits: torch.Tensor, mask, k: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's real positions' k largest log-probabilities and their ids, left-aligned in `width` positions."""
    values, ids = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
    values, ids = values.cpu(), ids.cpu()
    keep = mask.cpu().bool() if mask is not None else torch.ones(values.shape[:2], dtype=torch.bool)
    if keep.all() and values.shape[1] == width:  # no padding (causal-LM blocks)
        return values, ids.to(torch.int32)
    out_values = torch.zeros(len(values), width, k)
    out_ids = torch.zeros(len(values), width, k, dtype=torch.int32)
    for i in range(len(values)):
        n = int(keep[i].sum())
        out_values[i, :n] = values[i][keep[i]]
        out_ids[i, :n] = ids[i][keep[i]].to(torch.int32)
    return out_values, out_ids


# -- reading ----------------------------------------------------------------------------------------------------


class TeacherCache:
    """The cached outputs of one folder; `lookup(batch)` stands in for the teacher's forward pass."""

    def __init__(self, folder, fprint: dict, status: str = "reused"):
        from safetensors import safe_open

        self.folder = Path(folder)
        self.fingerprint = fprint
        self.info = fprint["info"]
        self.status = status
        self.kind = self.info["kind"]
        self._file = safe_open(str(self.folder / OUTPUTS_FILE), framework="pt")
        names = set(self._file.keys())
        expected = {"keys", "logits"} if self.kind == "logits" else {"keys", "log_probs", "ids"}
        if names != expected or self._file.get_slice("keys").get_shape()[0] != self.info["rows"]:
            raise UsageError(f"Teacher cache '{self.folder}' does not hold the outputs its fingerprint describes; "
                             "rebuild it with --teacher-cache-rebuild or delete the folder.")  # fmt: skip
        self._slices = {name: self._file.get_slice(name) for name in names}
        keys = self._file.get_tensor("keys").numpy()
        self._index = {row.tobytes(): i for i, row in enumerate(keys)}

    @property
    def rows(self) -> int:
        return self.info["rows"]

    def summary(self) -> dict:
        """What the report records of the cache."""
        parts = self.fingerprint["parts"]
        entry = {"path": str(self.folder), "status": self.status, "rows": self.rows, "outputs": parts["outputs"],
                 "teacher_dtype": parts.get("teacher_dtype")}  # fmt: skip
        if self.status == "built":
            entry["build_seconds"] = self.info.get("build_seconds")
        return entry

    def check_student(self, student) -> None:
        """Refuse a student whose outputs cannot be compared with the cached ones."""
        from .distillation_trainer import _vocab_size, is_causal_lm

        if is_causal_lm(student) != (self.kind == "top_k"):
            held = "a causal LM's top-k log-probabilities" if self.kind == "top_k" else "a classifier's logits"
            raise UsageError(f"Teacher cache '{self.folder}' holds {held}, which a {type(student).__name__} "
                             "student cannot learn from.")  # fmt: skip
        width = self._slices["logits"].get_shape()[1] if self.kind == "logits" else None
        if width is not None and student.config.num_labels != width:
            raise UsageError(f"Teacher cache '{self.folder}' holds {width} logits per row but the student has "
                             f"{student.config.num_labels} labels; they must match.")  # fmt: skip
        vocab = _vocab_size(student.config)
        if self.kind == "top_k" and vocab != self.info["vocab_size"]:
            raise UsageError(f"Teacher cache '{self.folder}' was built with a {self.info['vocab_size']}-token "
                             f"vocabulary but the student has {vocab}; they must match.")  # fmt: skip

    def _row(self, name: str, row: int) -> torch.Tensor:
        return self._slices[name][row : row + 1]

    def lookup(self, batch: dict, like: torch.Tensor | None = None) -> CachedOutputs | None:
        """The teacher's outputs for `batch`, or None when any of its rows is not cached (held-out data).

        Classifier logits take the device and dtype of `like` (the student's logits); top-k log-probabilities
        come as float32 in the batch's (batch, positions, k) layout, zeros at padding.
        """
        rows = [self._index.get(key) for key in row_keys(batch)]
        if any(row is None for row in rows):
            return None
        device = batch["input_ids"].device
        if self.kind == "logits":
            logits = torch.cat([self._row("logits", r) for r in rows]).to(device)
            return CachedOutputs(logits=logits.to(like.dtype) if like is not None else logits)
        stored_log_probs = torch.cat([self._row("log_probs", r) for r in rows])  # (batch, longest row, k)
        stored_ids = torch.cat([self._row("ids", r) for r in rows]).long()
        width = batch["input_ids"].shape[1]
        mask = batch.get("attention_mask")
        keep = mask.detach().cpu().bool() if mask is not None else torch.ones(len(rows), width, dtype=torch.bool)
        if keep.all() and width == stored_log_probs.shape[1]:  # no padding (causal-LM blocks)
            return CachedOutputs(log_probs=stored_log_probs.to(device), ids=stored_ids.to(device))
        log_probs = stored_log_probs.new_zeros(len(rows), width, stored_log_probs.shape[-1])
        ids = stored_ids.new_zeros(log_probs.shape)
        for i in range(len(rows)):  # each row's real tokens, back at their places in the padded batch
            n = int(keep[i].sum())
            log_probs[i, keep[i]] = stored_log_probs[i, :n]
            ids[i, keep[i]] = stored_ids[i, :n]
        return CachedOutputs(log_probs=log_probs.to(device), ids=ids.to(device))


def load_cache(folder, fprint: dict) -> TeacherCache:
    """The cache in `folder`, refused in one sentence when its fingerprint differs from `fprint`."""
    folder = Path(folder)
    try:
        cached = json.loads((folder / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"Teacher cache '{folder}' has no readable {FINGERPRINT_FILE}; rebuild it with "
                         "--teacher-cache-rebuild or delete the folder.") from None  # fmt: skip
    changed = stale_parts(cached, fprint)
    if changed:
        raise UsageError(f"Teacher cache '{folder}' is stale: {', '.join(changed)} changed since it was built; "
                         "rebuild it with --teacher-cache-rebuild or delete the folder.")  # fmt: skip
    return TeacherCache(folder, cached, status="reused")


def _is_ours(folder: Path) -> bool:
    """An empty folder, or one holding only cache files (complete, or left by an interrupted build)."""
    names = (OUTPUTS_FILE, FINGERPRINT_FILE)
    return all(p.name in names or p.name.startswith(tuple(f".{n}.tmp-" for n in names)) for p in folder.iterdir())


def open_teacher_cache(folder, teacher, tokenizer, dataset, collator, max_length: int | None, args) -> TeacherCache:
    """Reuse the cache in `folder` when its fingerprint matches, build it when missing (or asked to rebuild),
    refuse it when stale; `args` (DistillationArguments) gives top-k, rebuild, batch size, device and progress."""
    from .distillation_trainer import is_causal_lm

    folder = Path(folder)
    check_cache_settings(args, is_causal_lm(teacher))
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--teacher-cache '{folder}' exists and is not a folder.")
    current = fingerprint(teacher, tokenizer, dataset, max_length, args.teacher_cache_top_k)
    if (folder / FINGERPRINT_FILE).exists() and not args.teacher_cache_rebuild:
        cache = load_cache(folder, current)
        print(f"Reusing the teacher's outputs cached in {folder} ({cache.rows} rows, {cache.summary()['outputs']}).")
        return cache
    if folder.is_dir() and not _is_ours(folder):
        raise UsageError(f"--teacher-cache '{folder}' holds other files; choose an empty or new folder.")
    print(f"Caching the teacher's outputs on {current['info']['rows']} training rows in {folder}.")
    return build_cache(folder, teacher, dataset, collator, current, args.per_device_eval_batch_size, args.device,
                       progress=not args.disable_tqdm)  # fmt: skip

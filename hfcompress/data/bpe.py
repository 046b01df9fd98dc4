"""Train a small byte-level BPE tokenizer on local text, for causal LMs built from scratch (tests, benchmarks).

Byte-level BPE covers every string (no unknown tokens), so the evaluation text is scored exactly.
"""

from __future__ import annotations

from pathlib import Path


def train_bpe_tokenizer(texts, vocab_size: int = 8000, model_max_length: int = 1024):
    """A `PreTrainedTokenizerFast` with `<|endoftext|>` as BOS, EOS and pad, trained on `texts` (strings)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = "<|endoftext|>"
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=special,
        eos_token=special,
        pad_token=special,
        model_max_length=model_max_length,
    )


def text_lines(path: str | Path, limit: int | None = None) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    return lines[:limit] if limit else lines

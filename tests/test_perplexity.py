"""Strided sliding-window perplexity against direct computations on tiny causal LMs."""

import math

import pytest
import torch
import torch.nn.functional as F

from hfcompress.tasks import CausalLMTask
from hfcompress.tasks.causal_lm import strided_perplexity
from tests.conftest import tiny_lm


def _scoring_start(t: int, n: int, window: int, stride: int) -> int:
    """The begin of the window that scores token t, as the perplexity guide's loop assigns it."""
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        if prev_end <= t < end:
            return begin
        prev_end = end
    raise AssertionError(t)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("window,stride", [(16, 8), (16, 16), (12, 5), (64, 64)])
def test_matches_per_token_computation(family, window, stride):
    model = tiny_lm(family, vocab_size=97, seed=3)
    ids = torch.randint(0, 97, (41,), generator=torch.Generator().manual_seed(0))
    result = strided_perplexity(model, ids, window, stride)
    # Direct: each token t is predicted from ids[start:t], one forward pass per token. A token that opens its
    # window has no context there and is not scored (the guide's windows never score their first position);
    # with stride < window that is token 0 only.
    nll, scored = 0.0, 0
    with torch.no_grad():
        for t in range(1, len(ids)):
            start = _scoring_start(t, len(ids), window, stride)
            if start == t:
                continue
            logits = model(input_ids=ids[start:t].unsqueeze(0)).logits[0, -1]
            nll -= F.log_softmax(logits.double(), -1)[ids[t]].item()
            scored += 1
    assert result["scored_tokens"] == scored
    if stride < window:
        assert scored == len(ids) - 1  # every token but the first, exactly once
    assert result["tokens"] == len(ids)
    assert result["perplexity"] == pytest.approx(math.exp(nll / scored), rel=1e-4)


def test_one_window_equals_the_models_own_loss():
    model = tiny_lm("llama", vocab_size=97, seed=1)
    ids = torch.randint(0, 97, (30,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss = model(input_ids=ids.unsqueeze(0), labels=ids.unsqueeze(0)).loss.item()
    result = strided_perplexity(model, ids, window=64, stride=32)
    assert result["windows"] == 1
    assert result["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)


def test_task_evaluate_scores_the_exact_file_text(tmp_path, lm_tokenizer):
    text = "Line one , with <unk> tokens .\n\n = Heading = \n\nLast line without newline"
    path = tmp_path / "eval.txt"
    path.write_bytes(text.encode("utf-8"))
    task = CausalLMTask(validation_file=str(path), block_size=8, stride=4)
    splits = task.load_splits(need_train=False)
    assert splits["validation"]["text"][0] == text  # read whole, not re-joined lines
    model = tiny_lm("llama", vocab_size=len(lm_tokenizer))
    task.prepare(splits, lm_tokenizer, model.config)
    metrics = task.evaluate(model, lm_tokenizer, splits)
    ids = lm_tokenizer(text)["input_ids"]
    assert metrics["tokens"] == len(ids) and metrics["scored_tokens"] == len(ids) - 1
    assert metrics["window"] == 8 and metrics["stride"] == 4
    nll = metrics["nll_per_token"] * metrics["scored_tokens"]
    assert metrics["bits_per_byte"] == pytest.approx(nll / math.log(2) / len(text.encode()), rel=1e-4)


def test_block_size_beyond_the_model_is_refused(lm_tokenizer, text_files):
    from hfcompress.errors import UsageError

    task = CausalLMTask(validation_file=str(text_files["validation"]), block_size=1024)
    splits = task.load_splits(need_train=False)
    with pytest.raises(UsageError, match="larger than the model's maximum context of 256"):
        task.prepare(splits, lm_tokenizer, tiny_lm_config_for_test())


def tiny_lm_config_for_test():
    from tests.conftest import tiny_lm_config

    return tiny_lm_config("llama", 512)


def test_training_blocks_follow_run_clm(lm_tokenizer, text_files):
    task = CausalLMTask(train_file=str(text_files["train"]), validation_file=str(text_files["validation"]),
                        block_size=32)  # fmt: skip
    splits = task.load_splits(need_train=True)
    blocks = task.train_dataset(splits, lm_tokenizer)
    lines = text_files["train"].read_text().splitlines(keepends=True)
    ids = [i for line in lines for i in lm_tokenizer(line)["input_ids"]]
    assert len(blocks) == len(ids) // 32  # the short tail is dropped
    assert blocks[0]["input_ids"] == ids[:32] and blocks[0]["labels"] == ids[:32]
    assert blocks[-1]["input_ids"] == ids[(len(blocks) - 1) * 32 : len(blocks) * 32]

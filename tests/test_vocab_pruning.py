"""Vocabulary pruning: the kept tokens' embeddings, a tied output head, the rewritten tokenizer, and the CLI."""

import json
from collections import Counter

import pytest
import torch
from conftest import SHARED_GLUE, run_cli, snapshot, tiny_config
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from hfcompress.cli.main import main
from hfcompress.pruning.vocab import (
    always_kept,
    check_same_ids,
    choose_tokens,
    encode,
    prune_embeddings,
    prune_tokenizer,
    task_rows,
)
from hfcompress.tasks.glue import GlueTaskConfig

TEXTS = [("A gripping, beautifully acted film.",), ("The plot is thin, but the cast is playful!",)]


def _kept(tokenizer, config, rows, min_count=1):
    counts = Counter(i for ids in encode(tokenizer, rows) for i in ids)
    return choose_tokens(counts, always_kept(tokenizer, config, config.vocab_size), min_count)


def _logits(model, tokenizer, rows):
    batch = tokenizer(*[list(c) for c in zip(*rows)], padding=True, truncation=True, max_length=128,
                      return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        return model(**batch).logits


def _sst2_rows(glue_dir, splits=("train",)):
    task = GlueTaskConfig(task="sst2", data_dir=str(glue_dir))
    return task_rows(task, task.load_splits(need_train=True), splits)


def test_tokens_are_kept_by_count_with_the_special_tokens_always(tokenizer):
    counts = Counter({2003: 3, 2143: 1, 1996: 2})
    always = always_kept(tokenizer, tiny_config(), 30522)
    assert always == {0, 100, 101, 102, 103}  # [PAD] [UNK] [CLS] [SEP] [MASK]
    assert choose_tokens(counts, always, 1) == [0, 100, 101, 102, 103, 1996, 2003, 2143]
    assert choose_tokens(counts, always, 2) == [0, 100, 101, 102, 103, 1996, 2003]


@pytest.mark.parametrize("kind", ["bert", "generic"])
def test_pruned_tokenizer_reads_kept_text_alike_and_other_words_as_unk(kind, tokenizer, tmp_path):
    if kind == "generic":  # a plain tokenizer.json, whose post-processor ([CLS] and [SEP] ids) is used as saved
        generic = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
        generic.save_pretrained(tmp_path / "generic")
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / "generic")
    kept = _kept(tokenizer, tiny_config(), TEXTS)
    pruned = prune_tokenizer(tokenizer, kept)
    assert type(pruned) is type(tokenizer) and len(pruned) == len(kept) < 40
    assert check_same_ids(encode(tokenizer, TEXTS), encode(pruned, TEXTS), kept) == len(TEXTS)
    # Special tokens keep their relative order: [PAD] [UNK] [CLS] [SEP] [MASK] become 0..4.
    assert [pruned.pad_token_id, pruned.unk_token_id, pruned.cls_token_id, pruned.sep_token_id,
            pruned.mask_token_id] == [0, 1, 2, 3, 4]  # fmt: skip
    pair = pruned("the zebra", "a film", padding="max_length", max_length=10, return_token_type_ids=True)
    assert pruned.convert_ids_to_tokens(pair["input_ids"]) == [
        "[CLS]", "the", "[UNK]", "[SEP]", "a", "film", "[SEP]", "[PAD]", "[PAD]", "[PAD]"]  # fmt: skip
    assert pair["token_type_ids"][:7] == [0, 0, 0, 0, 1, 1, 1] and pair["attention_mask"][7:] == [0, 0, 0]
    assert pruned.decode(pruned("a gripping film")["input_ids"], skip_special_tokens=True) == "a gripping film"
    pruned.save_pretrained(tmp_path / "pruned")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "pruned")
    assert reloaded.get_vocab() == pruned.get_vocab()
    assert reloaded("the zebra")["input_ids"] == [2, pruned.convert_tokens_to_ids("the"), 1, 3]


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "electra"])
def test_a_tied_output_head_and_its_bias_are_sliced_with_the_embeddings(model_type, tokenizer, tmp_path):
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(tiny_config(model_type)).eval()
    with torch.no_grad():
        for module in model.modules():  # a nonzero output bias, so slicing it is checked too
            if getattr(module, "bias", None) is not None and module.bias.shape == (30522,):
                module.bias.normal_()
    kept = _kept(tokenizer, model.config, TEXTS)
    expected = _logits(model, tokenizer, TEXTS)[..., kept]
    prune_embeddings(model, kept)
    pruned = prune_tokenizer(tokenizer, kept)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert torch.equal(_logits(model, pruned, TEXTS), expected)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.vocab_size == len(kept) and reloaded.config.pad_token_id == 0
    assert torch.equal(_logits(reloaded, pruned, TEXTS), expected)


def test_real_minilm_on_sst2_text_keeps_its_logits(minilm_path, tokenizer):
    rows = _sst2_rows(SHARED_GLUE)[:3000]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=2).eval()
    before = sum(p.numel() for p in model.parameters())
    assert model.get_input_embeddings().weight.numel() / before > 0.5  # the word embeddings are most of MiniLM
    kept = _kept(tokenizer, model.config, rows)
    expected = _logits(model, tokenizer, rows[:64])
    pruned = prune_tokenizer(tokenizer, kept)
    assert check_same_ids(encode(tokenizer, rows), encode(pruned, rows), kept) == len(rows)
    prune_embeddings(model, kept)
    assert sum(p.numel() for p in model.parameters()) == before - (30522 - len(kept)) * 384
    assert torch.allclose(_logits(model, pruned, rows[:64]), expected, atol=1e-6)


def test_vocab_pruning_from_the_cli(tmp_path, tiny_teacher_dir, tiny_glue_dir, tokenizer):
    out = tmp_path / "vocab"
    result = run_cli("prune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, "--structure", "vocab",
                     "--latency-runs", "0", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "compression.json").read_text())
    vocab = report["result"]["vocabulary"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    pruned = AutoTokenizer.from_pretrained(out)
    size = len(pruned)
    assert vocab["vocab_size"] == [30522, size] and vocab["source"] == "train" and size < 200
    assert model.config.vocab_size == size and model.get_input_embeddings().weight.shape == (size, 32)
    assert report["source"]["parameters"] - report["result"]["parameters"] == (30522 - size) * 32
    # Train texts choose the vocabulary; the generated dev set has words the train set lacks.
    dev = vocab["dev"]
    assert dev["rows"] == 32 and 0 < dev["tokens_dropped"] < dev["tokens"] and dev["new_unknown_tokens"] > 0
    assert dev["dropped_fraction"] == round(dev["tokens_dropped"] / dev["tokens"], 6)
    step = report["steps"][-1]
    assert step["method"] == "vocab-pruning" and step["settings"]["max_logit_difference"] == 0.0
    assert step["settings"]["rows_checked"] == step["settings"]["source_rows"] == 64
    original = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    rows = _sst2_rows(tiny_glue_dir)
    assert torch.equal(_logits(model, pruned, rows), _logits(original, tokenizer, rows))
    assert "vocabulary (tokens)" in result.stdout and "dev tokens dropped" in result.stdout
    card = (out / "README.md").read_text()
    assert "Vocabulary pruning (vocab)" in card and f"keeps only the {size} of 30,522 tokens" in card


def test_train_and_validation_texts_keep_every_dev_logit(tmp_path, tiny_teacher_dir, tiny_glue_dir, tokenizer):
    out = tmp_path / "vocab"
    code = main([str(a) for a in ["prune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir,
                                  "--structure", "vocab", "--vocab-source", "train+validation", "--latency-runs", "0",
                                  "--output-dir", out]])  # fmt: skip
    assert code == 0
    report = json.loads((out / "compression.json").read_text())
    assert report["result"]["vocabulary"]["dev"]["tokens_dropped"] == 0
    assert report["result"]["metrics"] == report["source"]["metrics"]
    rows = _sst2_rows(tiny_glue_dir, ("train", "validation"))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    original = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    assert torch.equal(_logits(model, AutoTokenizer.from_pretrained(out), rows), _logits(original, tokenizer, rows))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--vocab-min-count", "0"], "--vocab-min-count must be at least 1, got 0."),
        (["--vocab-source", "test"], "--vocab-source must be train or train+validation, not 'test'."),
        (["--method", "wanda"], "leave out --method wanda"),
        (["--sparsity", "0.5"], "it takes no --sparsity or --ffn-size"),
        (["--recovery-steps", "2"], "leave out --recovery-steps"),
        (["--teacher", "TEACHER"], "leave out --teacher"),
    ],
)
def test_impossible_vocab_settings_fail_fast(extra, message, tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    out = tmp_path / "out"
    extra = [str(tiny_teacher_dir) if a == "TEACHER" else a for a in extra]
    code = main([str(a) for a in ["prune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir,
                                  "--structure", "vocab", *extra, "--output-dir", out]])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err[-2000:]
    assert not out.exists() and not (tmp_path / ".out.partial").exists()


def test_vocab_options_need_the_vocab_structure(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    code = main([str(a) for a in ["prune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir,
                                  "--vocab-min-count", "2", "--output-dir", tmp_path / "out"]])  # fmt: skip
    assert code == 2 and "--vocab-source and --vocab-min-count apply to --structure vocab." in capsys.readouterr().err


def test_a_bpe_tokenizer_is_refused_in_one_sentence(tmp_path, tiny_lm_dirs, text_files, capsys):
    source = tiny_lm_dirs["llama"]
    before = snapshot(source)
    out = tmp_path / "out"
    code = main([str(a) for a in ["prune", source, "--task", "causal-lm", "--train-file", text_files["train"],
                                  "--validation-file", text_files["validation"], "--structure", "vocab",
                                  "--output-dir", out]])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Vocabulary pruning supports WordPiece tokenizers" in err and "uses a BPE tokenizer." in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not (tmp_path / ".out.partial").exists() and snapshot(source) == before

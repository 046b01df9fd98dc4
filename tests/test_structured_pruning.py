"""Minitron-style width and depth pruning: importance scores, weight slicing, reloading, and the CLI."""

import json

import pytest
import torch

from hfcompress.pruning.importance import choose_heads, collect_importance, top_indices
from hfcompress.pruning.minitron import apply_width
from hfcompress.pruning.surgery import check_rebuildable, drop_blocks
from tests.conftest import logits_of, random_batches, run_cli, snapshot, tiny_lm


def _reloaded(model, path):
    from transformers import AutoModelForCausalLM

    model.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path).eval()


def test_top_indices_keeps_the_best_in_their_order():
    assert top_indices(torch.tensor([0.3, 0.9, 0.1, 0.5]), 2).tolist() == [1, 3]


def test_heads_are_kept_by_group_then_within_groups():
    # 6 query heads in 3 key/value groups of 2: group sums 3, 11, 4; keep 2 groups and 1 query head in each.
    scores = torch.tensor([1.0, 2.0, 5.0, 6.0, 3.0, 1.0])
    groups, queries = choose_heads(scores, kv_heads=3, keep_kv=2, keep_heads=2)
    assert groups.tolist() == [1, 2] and queries.tolist() == [3, 4]
    groups, queries = choose_heads(scores, kv_heads=3, keep_kv=3, keep_heads=3)
    assert groups.tolist() == [0, 1, 2] and queries.tolist() == [1, 3, 4]


def test_importance_is_the_norm_of_each_neurons_activation():
    model = tiny_lm("llama", 128, layers=2)
    batches = random_batches(128)
    seen = []
    handle = model.model.layers[1].mlp.down_proj.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    for batch in batches:
        logits_of(model, batch)
    handle.remove()
    expected = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen]).double().norm(dim=0)
    importance = collect_importance(model, batches, width=True, progress=False)
    assert torch.allclose(importance.neurons[1], expected, rtol=1e-4)
    assert importance.heads[0].shape == (4,) and importance.channels.shape == (32,)


def test_a_block_that_changes_nothing_is_the_least_important():
    model = tiny_lm("llama", 128, layers=3)
    with torch.no_grad():  # block 1 adds zero to the residual stream: output == input
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
    scores = collect_importance(model, random_batches(128), width=False, progress=False).blocks
    assert scores[1].item() == pytest.approx(0.0, abs=1e-6) and (scores[[0, 2]] > 1e-3).all()
    assert top_indices(scores, 2).tolist() == [0, 2]


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral"])
def test_ffn_and_head_slicing_equal_masking_the_dropped_weights(family, tmp_path):
    model = tiny_lm(family, 128, layers=2)
    masked = tiny_lm(family, 128, layers=2)
    batch = random_batches(128, count=1)[0]
    importance = collect_importance(model, [batch], width=True, progress=False)
    apply_width(model, importance, {"ffn_size": 40, "num_heads": 2, "num_kv_heads": 1})
    check_rebuildable(model)
    with torch.no_grad():  # the same pruning as zeros in the unsliced model: dropped neurons and heads add nothing
        for index, layer in enumerate(masked.model.layers):
            dropped = torch.ones(64, dtype=torch.bool)
            dropped[top_indices(importance.neurons[index], 40)] = False
            layer.mlp.down_proj.weight[:, dropped] = 0
            _, queries = choose_heads(importance.heads[index], 2, 1, 2)
            keep = torch.zeros(4, dtype=torch.bool)
            keep[queries] = True
            layer.self_attn.o_proj.weight.reshape(32, 4, 8)[:, ~keep] = 0
    assert torch.allclose(logits_of(model, batch), logits_of(masked, batch), atol=1e-5)
    reloaded = _reloaded(model, tmp_path)
    assert reloaded.config.intermediate_size == 40 and reloaded.config.num_attention_heads == 2
    assert reloaded.config.num_key_value_heads == 1 and reloaded.config.head_dim == 8
    assert torch.equal(logits_of(reloaded, batch), logits_of(model, batch))


@pytest.mark.parametrize("tied", [False, True])
def test_hidden_channel_slicing_reloads_with_identical_logits(tied, tmp_path):
    model = tiny_lm("qwen2", 128, layers=2, tie_word_embeddings=tied)
    batch = random_batches(128, count=1)[0]
    importance = collect_importance(model, [batch], width=True, progress=False)
    apply_width(model, importance, {"hidden_size": 20, "ffn_size": 48})
    check_rebuildable(model)
    assert model.lm_head.weight.shape == (128, 20)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    reloaded = _reloaded(model, tmp_path)
    assert reloaded.config.hidden_size == 20 and reloaded.config.head_dim == 8
    assert torch.equal(logits_of(reloaded, batch), logits_of(model, batch))
    assert torch.equal(reloaded.generate(**batch, max_new_tokens=4, do_sample=False),
                       model.generate(**batch, max_new_tokens=4, do_sample=False))  # fmt: skip


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_depth_pruning_keeps_blocks_and_the_cache_works(family, tmp_path):
    model = tiny_lm(family, 128, layers=4)
    original = tiny_lm(family, 128, layers=4)
    drop_blocks(model, [0, 2])
    check_rebuildable(model)
    batch = random_batches(128, count=1)[0]
    blocks = original.model.layers if family == "llama" else original.transformer.h
    assert torch.equal(model.state_dict()[next(k for k in model.state_dict() if ".1." in k)],
                       next(v for k, v in blocks[2].state_dict().items()))  # fmt: skip
    reloaded = _reloaded(model, tmp_path)
    assert torch.equal(logits_of(reloaded, batch), logits_of(model, batch))
    # generate() runs with a KV cache indexed by layer number: the renumbered blocks must use slots 0 and 1.
    out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert torch.equal(out, reloaded.generate(**batch, max_new_tokens=5, do_sample=False))
    assert torch.equal(out, model.generate(**batch, max_new_tokens=5, do_sample=False, use_cache=False))


def _data(text_files):
    return ["--task", "causal-lm", "--train-file", text_files["train"], "--validation-file", text_files["validation"],
            "--block-size", "32", "--latency-runs", "0", "--calibration-samples", "8"]  # fmt: skip


def test_width_pruning_with_recovery_from_the_cli(tmp_path, tiny_lm_dirs, text_files):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "width"
    result = run_cli("prune", tiny_lm_dirs["llama"], "--structure", "width", "--ffn-size", "32", "--num-kv-heads",
                     "1", "--hidden-size", "24", "--recovery-steps", "3", "--per_device_train_batch_size", "4",
                     "--learning_rate", "1e-3", "--report_to", "none", *_data(text_files),
                     "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "compression.json").read_text())
    step = report["steps"][-1]
    assert step["method"] == "width-pruning"
    assert step["settings"]["targets"] == {"ffn_size": 32, "hidden_size": 24, "num_heads": 2, "num_kv_heads": 1}
    assert step["settings"]["recovery_steps"] == 3 and step["settings"]["metrics_before_recovery"]["perplexity"] > 0
    assert report["result"]["parameters"] < report["source"]["parameters"]
    model = AutoModelForCausalLM.from_pretrained(out)
    config = model.config
    assert (config.intermediate_size, config.hidden_size, config.num_attention_heads) == (32, 24, 2)
    assert (out / "README.md").is_file() and not list(out.glob("*.bin"))


def test_depth_pruning_from_the_cli(tmp_path, tiny_lm_dirs, text_files):
    out = tmp_path / "depth"
    result = run_cli("prune", tiny_lm_dirs["gpt2"], "--structure", "depth", "--num-layers", "2", *_data(text_files),
                     "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    settings = json.loads((out / "compression.json").read_text())["steps"][-1]["settings"]
    assert len(settings["removed_blocks"]) == 2 and len(settings["block_importance"]) == 4
    removed = settings["removed_blocks"]
    ranked = sorted(range(4), key=lambda i: settings["block_importance"][i])
    assert sorted(ranked[:2]) == removed
    assert json.loads((out / "config.json").read_text())["n_layer"] == 2


@pytest.mark.parametrize(
    "family,extra,message",
    [
        ("gpt2", ["--structure", "width", "--ffn-size", "32"], "Width pruning supports the Llama layout"),
        ("llama", ["--structure", "width", "--ffn-size", "64"], "--ffn-size 64 is not below the model's 64"),
        ("llama", ["--structure", "width", "--num-heads", "3"], "must be a multiple of the 2 key/value heads"),
        ("llama", ["--structure", "width", "--num-kv-heads", "4"], "more than the model's 2 key/value heads"),
        ("llama", ["--structure", "width"], "--structure width needs a target"),
        ("llama", ["--structure", "width", "--hidden-size", "30"], "config cannot hold these sizes: The hidden size"),
        ("llama", ["--structure", "depth", "--num-layers", "4"], "--num-layers 4 is not below the model's 4"),
        ("llama", ["--structure", "depth", "--ffn-size", "32"], "--structure depth takes --num-layers only"),
        ("llama", ["--structure", "width", "--hidden-size", "0"], "--hidden-size must be at least 1"),
        ("llama", ["--structure", "depth", "--num-layers", "2", "--method", "wanda"], "leave out --method wanda"),
        ("llama", ["--num-layers", "2"], "--num-layers applies to --structure width or depth"),
    ],
)
def test_bad_structured_targets_fail_fast(tmp_path, tiny_lm_dirs, text_files, family, extra, message, capsys):
    from hfcompress.cli.main import main

    source = tiny_lm_dirs[family]
    before = snapshot(source)
    out = tmp_path / "out"
    code = main([str(a) for a in ["prune", source, *extra, *_data(text_files), "--output-dir", out]])
    err = capsys.readouterr().err
    assert code != 0 and message in err, err[-2000:]
    assert "Traceback" not in err and not out.exists() and snapshot(source) == before

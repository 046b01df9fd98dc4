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
    assert f"Pruned (depth) to num layers 2 (blocks {removed} removed)" in result.stderr


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
        ("llama", ["--structure", "depth", "--ffn-size", "32"], "--structure depth takes --num-layers or --param"),
        ("llama", ["--structure", "width", "--hidden-size", "0"], "--hidden-size must be at least 1"),
        ("llama", ["--structure", "depth", "--num-layers", "2", "--method", "wanda"], "leave out --method wanda"),
        ("llama", ["--num-layers", "2"], "--num-layers applies to --structure width or depth"),
        ("llama", ["--parameter-budget", "0.5"], "--parameter-budget applies to --structure width or depth"),
        ("llama", ["--structure", "depth", "--num-layers", "2", "--parameter-budget", "0.5"],
         "--parameter-budget and --num-layers both set the blocks to keep; give one of them."),
        ("llama", ["--structure", "width", "--parameter-budget", "1.0"], "--parameter-budget 1.0 is not a fraction "
         "below 1; give a fraction of the model's parameters (e.g. 0.5) or a count with a K, M, B or T suffix"),
        ("llama", ["--structure", "depth", "--parameter-budget", "half"], "--parameter-budget must be a fraction"),
        ("llama", ["--structure", "width", "--parameter-budget", "0M"], "not '0M'."),
        ("llama", ["--structure", "width", "--ffn-size", "32", "--hidden-size", "16", "--parameter-budget", "0.5"],
         "nothing left to choose"),
        ("llama", ["--structure", "width", "--importance", "magnitude", "--num-heads", "2"], "--ffn-size or --param"),
        ("llama", ["--structure", "width", "--hidden-size", "30", "--parameter-budget", "0.5"],
         "config cannot hold these sizes: The hidden size (30) is not a multiple of the number of attention heads"),
        # Tiny Llama: embeddings and head 2 x 512 x 32 + final norm 32 = 32,800, one block 9,280.
        ("llama", ["--structure", "depth", "--parameter-budget", "0.5"], "--parameter-budget 0.5 (34,960 "
         "parameters) is below the smallest size depth pruning (keeping 1 block) reaches, 42,080 parameters."),
        ("llama", ["--structure", "width", "--parameter-budget", "1K"], "below the smallest size width pruning (at "
         "FFN size 8, hidden size 4) reaches, 6,052 parameters."),
        ("gpt2", ["--structure", "depth", "--parameter-budget", "1.5M"], "--parameter-budget 1.5M (1,500,000 "
         "parameters) is not below the model's 58,816; depth pruning (keeping 1 block) reaches sizes from 33,184"),
    ],
)  # fmt: skip
def test_bad_structured_targets_fail_fast(tmp_path, tiny_lm_dirs, text_files, family, extra, message, capsys,
                                          monkeypatch):  # fmt: skip
    from hfcompress.cli.main import main
    from hfcompress.pruning import oneshot

    def refuse(*args, **kwargs):
        raise AssertionError("calibration started although the input was bad")

    monkeypatch.setattr(oneshot, "calibration_batches", refuse)
    source = tiny_lm_dirs[family]
    before = snapshot(source)
    out = tmp_path / "out"
    code = main([str(a) for a in ["prune", source, *extra, *_data(text_files), "--output-dir", out]])
    err = capsys.readouterr().err
    assert code != 0 and message in err.rstrip().split("\n")[-1], err[-2000:]  # one line, after the load's progress
    assert "Traceback" not in err and not out.exists() and snapshot(source) == before


def _llama_parameters(hidden: int, ffn: int) -> int:
    """The tiny Llama's parameters (vocabulary 512, 4 blocks, 4 query heads and 2 key/value heads of 8) at a
    hidden size and FFN size: per block q, k, v, o (32h + 16h + 16h + 32h), gate/up/down 3hf and two norms 2h;
    untied embeddings and head 2 x 512h, and the final norm h."""
    return hidden * (4 * (98 + 3 * ffn) + 2 * 512 + 1)


def test_a_width_budget_gives_the_largest_common_shrink_that_fits(tmp_path, tiny_lm_dirs, text_files):
    from transformers import AutoModelForCausalLM

    from hfcompress.architecture import count_parameters

    out = tmp_path / "width"
    result = run_cli("prune", tiny_lm_dirs["llama"], "--structure", "width", "--parameter-budget", "0.5",
                     "--recovery-steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none",
                     *_data(text_files), "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert _llama_parameters(32, 64) == 69920  # the model as built: the budget is 34,960
    # Factor 40/64 gives FFN 40 and hidden 20, rounded down to 16 (a multiple of 8 the 4 heads divide): 30,352.
    # The next factor, 48/64, gives hidden 24 and FFN 48: 47,832, over the budget.
    assert _llama_parameters(16, 40) == 30352 and _llama_parameters(24, 48) > 34960
    report = json.loads((out / "compression.json").read_text())
    settings = report["steps"][-1]["settings"]
    assert settings["targets"] == {"ffn_size": 40, "hidden_size": 16} and settings["recovery_steps"] == 2
    assert (settings["parameter_budget"], settings["budget_parameters"]) == ("0.5", 34960)
    assert settings["parameters_after_pruning"] == report["result"]["parameters"] == 30352
    model = AutoModelForCausalLM.from_pretrained(out)
    assert (model.config.hidden_size, model.config.intermediate_size, model.config.num_attention_heads) == (16, 40, 4)
    assert count_parameters(model) == 30352
    summary = result.stdout.replace("\n", " ")
    assert "parameter budget" in summary and "0.03 M" in summary  # next to the result's 0.03 M parameters
    # said before the recovery run starts, with the count against the budget
    said = "Pruned (width) to ffn size 40, hidden size 16: 69,920 -> 30,352 parameters (budget 34,960)"
    assert said in result.stderr


def test_a_width_budget_keeps_the_sizes_given(tmp_path, tiny_lm_dirs, text_files):
    from transformers import AutoModelForCausalLM

    from hfcompress.cli.main import main

    out = tmp_path / "width"
    # Qwen2 keeps one key/value group (two query heads) as asked; the budget, 0.7 of 70,176 = 49,123, chooses
    # FFN 56 and hidden 24 (factor 7/8): 45,656 parameters (the next factor, 1, would keep 32 and 64).
    args = ["prune", tiny_lm_dirs["qwen2"], "--structure", "width", "--num-kv-heads", "1", "--parameter-budget",
            "0.7", *_data(text_files), "--output-dir", out]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    report = json.loads((out / "compression.json").read_text())
    settings = report["steps"][-1]["settings"]
    assert settings["targets"] == {"num_heads": 2, "num_kv_heads": 1, "ffn_size": 56, "hidden_size": 24}
    assert report["source"]["parameters"] == 70176 and settings["budget_parameters"] == 49123
    assert 0.9 * 49123 < settings["parameters_after_pruning"] == report["result"]["parameters"] == 45656
    model = AutoModelForCausalLM.from_pretrained(out)
    assert (model.config.hidden_size, model.config.num_key_value_heads) == (24, 1)


@pytest.mark.parametrize(
    "family,budget,layers",
    [
        # GPT-2 (tied): embeddings 512 x 32 + positions 256 x 32 + final norm 64 = 24,640; a block: two norms 128,
        # attention 32 x 96 + 96 + 32 x 32 + 32, MLP 32 x 64 + 64 + 64 x 32 + 32 = 8,544. 0.6 of 58,816 = 35,289
        # holds 24,640 + 8,544 = 33,184 but not two blocks (41,728).
        ("gpt2", "0.6", 1),
        # Llama: embeddings and head 2 x 512 x 32 + final norm 32 = 32,800, a block 9,280: 61K holds three blocks
        # (60,640), not four.
        ("llama", "61K", 3),
    ],
)
def test_a_depth_budget_keeps_the_most_blocks_that_fit(tmp_path, tiny_lm_dirs, text_files, family, budget, layers):
    from transformers import AutoModelForCausalLM

    from hfcompress.architecture import num_layers
    from hfcompress.cli.main import main

    out = tmp_path / "depth"
    args = ["prune", tiny_lm_dirs[family], "--structure", "depth", "--parameter-budget", budget, *_data(text_files),
            "--output-dir", out]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    report = json.loads((out / "compression.json").read_text())
    settings = report["steps"][-1]["settings"]
    assert settings["targets"] == {"num_layers": layers} and settings["parameter_budget"] == budget
    assert settings["parameters_after_pruning"] == report["result"]["parameters"] <= settings["budget_parameters"]
    ranked = sorted(range(4), key=lambda i: settings["block_importance"][i])
    assert settings["removed_blocks"] == sorted(ranked[: 4 - layers])  # the least important blocks go
    assert num_layers(AutoModelForCausalLM.from_pretrained(out).config) == layers


def test_a_recipe_step_takes_a_parameter_budget(tmp_path, tiny_lm_dirs, text_files):
    import yaml

    from hfcompress.cli.main import main

    recipe = {"model": str(tiny_lm_dirs["llama"]), "task": "causal-lm", "train_file": str(text_files["train"]),
              "validation_file": str(text_files["validation"]), "block_size": 32, "latency_runs": 0,
              "calibration_samples": 8}  # fmt: skip
    recipe["steps"] = [{"prune": {"structure": "width", "parameter_budget": 0.5}}]  # named as the CLI flag
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), "--output-dir", str(tmp_path / "out")]) == 0
    settings = json.loads((tmp_path / "out" / "01-prune" / "compression.json").read_text())["steps"][-1]["settings"]
    assert settings["targets"] == {"ffn_size": 40, "hidden_size": 16} and settings["budget_parameters"] == 34960


@pytest.mark.parametrize("family,tied", [("qwen2", True), ("qwen2", False), ("llama", True)])
def test_a_width_budget_counts_the_sliced_model_exactly(family, tied, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    from hfcompress.architecture import count_parameters
    from hfcompress.pruning.budget import parameters_of, width_for_budget

    # As real Qwen2 checkpoints: no head_dim in the config (transformers 5 raises on reading it), derived 32 / 4.
    config = AutoConfig.for_model(family, vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    targets, budget = width_for_budget(model, {}, "0.5")
    assert budget == count_parameters(model) // 2 and targets["hidden_size"] % 8 == 0
    expected = parameters_of(model, targets)
    batch = random_batches(128, count=1)[0]
    apply_width(model, collect_importance(model, [batch], width=True, progress=False), targets)
    check_rebuildable(model)
    assert count_parameters(model) == expected <= budget
    reloaded = _reloaded(model, tmp_path)
    assert reloaded.config.head_dim == 8 and count_parameters(reloaded) == expected
    assert torch.equal(logits_of(reloaded, batch), logits_of(model, batch))

"""One-shot pruning with calibration, block by block: the driver on tiny models, and `hfcompress prune --method`."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hfcompress.architecture import find_layer_list
from hfcompress.pruning.calibration import prune_block_by_block
from hfcompress.pruning.masks import prunable_modules
from hfcompress.pruning.oneshot import prune_one_block
from hfcompress.pruning.oneshot_scores import wanda_mask
from tests.conftest import run_cli, snapshot, tiny_lm


def _batches(vocab, count=3, length=16, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (batch, length), generator=generator)} for _ in range(count)]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_each_block_is_visited_once_in_order(family):
    model = tiny_lm(family, 128, layers=3)
    _, _, layers = find_layer_list(model)
    calls = []
    for index, layer in enumerate(layers):
        layer.register_forward_hook(lambda *a, i=index: calls.append(i))
    pruned_order = []

    def prune(index, modules, stats):
        pruned_order.append(index)
        assert all(s.tokens == 3 * 2 * 16 for s in stats.values())  # every calibration token, once
        prune_one_block("wanda", 0.5, None, 128, 0.01)(index, modules, stats)

    modules = prunable_modules(model)
    summary = prune_block_by_block(model, _batches(128), modules, prune, hessian=False, progress=False)
    assert pruned_order == [0, 1, 2]
    # Two passes over the 3 batches per block (statistics, then the pruned outputs); the capture never ran block 0.
    assert calls == [0] * 6 + [1] * 6 + [2] * 6
    assert [entry["block"] for entry in summary] == [0, 1, 2]
    assert all(0 < entry["relative_output_change"] < 1 for entry in summary)
    for name, module in modules.items():
        weight = module.weight if family == "llama" else module.weight.t()
        assert (weight == 0).sum(dim=1).eq(weight.shape[1] // 2).all(), name  # 50% in every row


def test_wanda_uses_the_true_inputs_of_each_layer():
    dense = tiny_lm("llama", 128, layers=2)
    model = tiny_lm("llama", 128, layers=2)
    batches = _batches(128)
    seen = []
    handle = dense.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    with torch.no_grad():
        for batch in batches:
            dense(**batch)
    handle.remove()
    inputs = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen])
    expected = wanda_mask(dense.model.layers[0].mlp.down_proj.weight, inputs.norm(dim=0), 0.5)
    prune_block_by_block(model, batches, prunable_modules(model), prune_one_block("wanda", 0.5, None, 128, 0.01),
                         hessian=False, progress=False)  # fmt: skip
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight != 0, expected)


def _data(text_files):
    return ["--task", "causal-lm", "--train-file", text_files["train"], "--validation-file", text_files["validation"],
            "--block-size", "32", "--latency-runs", "0"]  # fmt: skip


def _report(folder):
    return json.loads((folder / "compression.json").read_text())


def test_wanda_2_4_on_a_causal_lm(tmp_path, tiny_lm_dirs, text_files):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "wanda"
    result = run_cli("prune", tiny_lm_dirs["llama"], "--method", "wanda", "--structure", "2:4",
                     "--calibration-samples", "8", *_data(text_files), "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = _report(out)
    step = report["steps"][-1]
    assert step["method"] == "oneshot-pruning" and step["settings"]["method"] == "wanda"
    assert step["settings"]["calibration_samples"] == 8 and step["settings"]["calibration_tokens_per_sample"] == 32
    assert len(step["settings"]["blocks"]) == 4 and step["settings"]["peak_rss_bytes"] > 0
    assert report["result"]["sparsity"]["global"] == 0.5 and "sparse kernel" in report["result"]["sparsity"]["note"]
    assert report["source"]["metrics"]["perplexity"] > 0 and report["result"]["metrics"]["perplexity"] > 0
    weights = load_file(out / "model.safetensors")
    for name, tensor in weights.items():
        if name.endswith("proj.weight"):
            assert (tensor.reshape(tensor.shape[0], -1, 4) != 0).sum(dim=2).eq(2).all(), name
    assert (weights["lm_head.weight"] != 0).all() and (weights["model.embed_tokens.weight"] != 0).all()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.model.layers[0].self_attn.q_proj.weight.eq(0).float().mean() == 0.5


def test_sparsegpt_on_gpt2_with_recovery_keeps_the_masks(tmp_path, tiny_lm_dirs, text_files):
    out = tmp_path / "sparsegpt"
    result = run_cli("prune", tiny_lm_dirs["gpt2"], "--method", "sparsegpt", "--sparsity", "0.6",
                     "--calibration-samples", "8", "--recovery-steps", "3", "--per_device_train_batch_size", "4",
                     "--learning_rate", "1e-3", "--report_to", "none", "--teacher-dtype", "bfloat16",
                     *_data(text_files), "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = _report(out)
    settings = report["steps"][-1]["settings"]
    assert settings["recovery_steps"] == 3 and settings["metrics_before_recovery"]["perplexity"] > 0
    assert settings["teacher_placement"] == {"device": "cpu", "dtype": "bfloat16"}  # the recovery teacher
    assert settings["dampening"] == 0.01 and report["result"]["sparsity"]["global"] == pytest.approx(0.6, abs=1e-3)
    weights = load_file(out / "model.safetensors")
    for name, tensor in weights.items():  # Conv1D stores (in, out); 60% per block of columns, masks held in training
        if name.endswith(("c_attn.weight", "c_fc.weight", "c_proj.weight")):
            assert tensor.eq(0).float().mean().item() == pytest.approx(0.6, abs=0.01), name
    assert (out / "README.md").is_file() and not list(out.glob("*.bin"))


def test_wanda_on_a_classifier_with_padding(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "clf"
    result = run_cli("prune", tiny_teacher_dir, "--method", "wanda", "--task", "sst2", "--data-dir", tiny_glue_dir,
                     "--calibration-samples", "16", "--latency-runs", "0", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = _report(out)
    assert report["result"]["sparsity"]["global"] == 0.5 and "accuracy" in report["result"]["metrics"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "wanda", "--structure", "4:8", "--sparsity", "0.3"], "4:8 pruning removes a fraction 0.5"),
        (["--method", "sparsegpt", "--calibration-samples", "0"], "--calibration-samples must be at least 1"),
        (["--method", "wanda", "--structure", "ffn"], "takes --structure unstructured or n:m"),
        (["--method", "obs"], "Unknown pruning method 'obs'"),
        (["--method", "wanda", "--structure", "3:4", "--modules", "q_proj"], ""),  # valid: q_proj widths are 32
        (["--recovery-steps", "5"], "--recovery-steps applies to one-shot methods"),
        (["--structure", "4:8"], "other n:m patterns need --method magnitude, wanda or sparsegpt"),
    ],
)
def test_bad_one_shot_settings_fail_fast(tmp_path, tiny_lm_dirs, text_files, extra, message, capsys):
    from hfcompress.cli.main import main

    out = tmp_path / "out"
    one_shot = "--method" in extra and "--calibration-samples" not in extra  # gradual pruning refuses the flag
    samples = ["--calibration-samples", "2"] if one_shot else []
    args = ["prune", tiny_lm_dirs["llama"], *extra, *samples, *_data(text_files), "--output-dir", out]
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    if not message:
        assert code == 0, err[-2000:]
        return
    assert code != 0 and message in err, err[-2000:]
    assert "Traceback" not in err and not out.exists()


def test_n_m_on_widths_it_does_not_divide(tmp_path, lm_tokenizer, text_files):
    path = tmp_path / "odd"
    tiny_lm("llama", len(lm_tokenizer), layers=2, intermediate_size=66).save_pretrained(path)
    lm_tokenizer.save_pretrained(path)
    before = snapshot(path)
    out = tmp_path / "out"
    result = run_cli("prune", path, "--method", "wanda", "--structure", "4:8", *_data(text_files), "--output-dir", out)
    assert result.returncode != 0
    assert "4:8 pruning needs input widths divisible by 8, but model.layers.0.mlp.down_proj has 66" in result.stderr
    assert not out.exists() and snapshot(path) == before


def test_calibration_needs_training_text(tmp_path, tiny_lm_dirs, text_files):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("prune", tiny_lm_dirs["llama"], "--method", "wanda", "--task", "causal-lm", "--train-file", empty,
                     "--validation-file", text_files["validation"], "--block-size", "32",
                     "--output-dir", out)  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()[-1]) > 20 and not out.exists()

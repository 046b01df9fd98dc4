"""Low-rank factorization: the SVD maths, rank choice, whitening, saving and loading, and the CLI end to end."""

import json
import re
import shutil

import pytest
import torch
from torch import nn

from hfcompress.cli.main import main
from hfcompress.errors import UsageError
from hfcompress.factorization import FactorizationConfig, FactorizedLinear, load_model
from hfcompress.factorization.factorize import factorize_layer, factorize_model
from hfcompress.factorization.layers import FactorizedEmbedding, target_modules
from hfcompress.factorization.loading import mark_factorized
from hfcompress.factorization.svd import (
    allocate_ranks,
    decompose,
    kept_energy,
    rank_for_energy,
    relative_error,
    spectrum,
    truncate,
    whitening,
)
from tests.conftest import logits_of, random_batches, snapshot, tiny_classifier, tiny_lm


def _orthonormal(rows, cols, seed):
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_truncated_svd_error_is_the_dropped_singular_values():
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    weight = _orthonormal(10, 6, 0) @ torch.diag(s) @ _orthonormal(8, 6, 1).T  # 10 x 8, rank 6
    assert torch.allclose(spectrum(weight)[:6], s) and spectrum(weight)[6:].abs().max() < 1e-12
    first, second = truncate(*decompose(weight), 3)
    assert first.shape == (3, 8) and second.shape == (10, 3)
    error = (weight - second @ first).norm()
    assert error.item() == pytest.approx(s[3:].pow(2).sum().sqrt().item(), rel=1e-10)
    assert relative_error(weight, first, second) == pytest.approx(error.item() / weight.norm().item(), rel=1e-10)
    assert kept_energy(s, 3) == pytest.approx(50 / 55.25)


@pytest.mark.parametrize("energy,rank", [(0.6, 1), (0.61, 2), (13 / 15, 2), (0.87, 3), (1.0, 4)])
def test_the_energy_rank_is_the_fewest_values_holding_it(energy, rank):
    assert rank_for_energy(torch.tensor([3.0, 2.0, 1.0, 1.0]), energy) == rank  # squares 9, 4, 1, 1 of 15


def test_the_budget_goes_to_the_most_energy_per_parameter():
    shapes = {"a": (10, 10), "b": (10, 30)}  # one more rank costs 20 and 40 weights
    spectra = {"a": torch.tensor([50.0, 40.0, 10.0]).sqrt(), "b": torch.tensor([1.0, 1.0]).sqrt()}
    # Shares of energy per weight: a[1] 0.4/20 = 0.02, b[1] 0.5/40 = 0.0125, a[2] 0.1/20 = 0.005.
    assert allocate_ranks(spectra, shapes, 60 + 60) == {"a": 2, "b": 2}
    # 100 weights: rank 1 each (60), a[1] (80); b[1] no longer fits, a[2] still does.
    assert allocate_ranks(spectra, shapes, 100) == {"a": 3, "b": 1}
    with pytest.raises(UsageError, match="below the 60 that rank 1 in every layer needs"):
        allocate_ranks(spectra, shapes, 59)


def test_whitening_preserves_outputs_on_correlated_inputs_better_than_plain_svd():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(16, 16, generator=generator, dtype=torch.float64) * torch.logspace(0, -3, 16)[:, None]
    inputs = torch.randn(512, 16, generator=generator, dtype=torch.float64) @ mixing  # strongly correlated features
    weight = torch.randn(24, 16, generator=generator, dtype=torch.float64)
    gram = inputs.T @ inputs
    white = whitening(gram, 1e-8)
    for rank in (2, 4, 6):
        plain = truncate(*decompose(weight), rank)
        whitened = truncate(*decompose(weight, white), rank, white)

        def measured(first, second):  # the relative output error, computed from the outputs themselves
            return ((inputs @ (weight - second @ first).T).norm() / (inputs @ weight.T).norm()).item()

        assert relative_error(weight, *whitened, gram) == pytest.approx(measured(*whitened), rel=1e-6)
        assert measured(*whitened) < 0.5 * measured(*plain)
        # Whitened singular values are output energy: the kept share is 1 - the squared relative output error.
        assert kept_energy(spectrum(weight, white), rank) == pytest.approx(1 - measured(*whitened) ** 2, abs=1e-6)


@pytest.mark.parametrize("conv1d", [False, True])
def test_an_exactly_low_rank_layer_keeps_its_outputs(conv1d):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    module = Conv1D(48, 16) if conv1d else nn.Linear(16, 48)
    with torch.no_grad():  # weight of rank 4; Conv1D stores it transposed (in x out)
        dense = torch.randn(48, 4) @ torch.randn(4, 16)
        module.weight.copy_(dense.T if conv1d else dense)
        module.bias.normal_()
    model = nn.Sequential(module)
    x = torch.randn(3, 5, 16)
    expected = model(x)
    entry = factorize_layer(model, "0", module, None, FactorizationConfig(rank=4))
    assert isinstance(model[0], FactorizedLinear) and model[0].rank == 4 and entry["parameters"] == [768, 256]
    assert torch.allclose(model(x), expected, atol=1e-5) and entry["weight_error"] < 1e-6


def test_layers_a_rank_would_not_shrink_stay_dense():
    model = tiny_lm("llama", 128, layers=2)  # q/o 32->32, k/v 32->16, gate/up 32->64, down 64->32
    modules = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".layers." in n}
    layers, blocks = factorize_model(model, random_batches(128), modules, FactorizationConfig(rank=12), progress=False)
    for name, entry in layers.items():
        module = model.get_submodule(name)
        if name.endswith(("k_proj", "v_proj")):  # 12 x (32 + 16) = 576 is not below 32 x 16 = 512
            assert entry["rank"] is None and "576 weights, not fewer than 512" in entry["kept_dense"]
            assert type(module) is nn.Linear
        else:
            assert isinstance(module, FactorizedLinear) and module.rank == entry["rank"] == 12
    assert len(blocks) == 2 and all(b["relative_output_change"] > 0 for b in blocks)


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_saved_folder_reloads_with_identical_logits_and_is_smaller(tmp_path, family):
    from transformers import AutoModelForCausalLM

    model = tiny_classifier("bert") if family == "bert" else tiny_lm(family, 128)
    model.save_pretrained(tmp_path / "dense")
    batch = random_batches(128)[0]
    embeddings = family != "gpt2"  # GPT-2 ties them to its lm_head
    modules = target_modules(model, embeddings=embeddings)
    assert len(modules) == 4 * (7 if family == "llama" else 4 if family == "gpt2" else 6) + embeddings
    config = FactorizationConfig(energy=0.5, whiten=True, factorize_embeddings=embeddings)
    layers, _ = factorize_model(model, [batch], modules, config, progress=False)
    if embeddings:  # ALBERT-style: vocab x r table, then r -> hidden; measured on the weights (inputs are ids)
        name = "bert.embeddings.word_embeddings" if family == "bert" else "model.embed_tokens"
        table = model.get_input_embeddings()
        assert isinstance(table, FactorizedEmbedding) and table.rank == layers[name]["rank"]
        assert 0 < layers[name]["weight_error"] < 1 and "output_error" not in layers[name]
    mark_factorized(model, {n: e["rank"] for n, e in layers.items() if e["rank"]}, "whitened-svd")
    model.save_pretrained(tmp_path / "low-rank")
    reloaded = load_model(tmp_path / "low-rank")
    assert type(reloaded).__name__ == type(model).__name__
    assert torch.equal(logits_of(reloaded, batch), logits_of(model, batch))
    size = lambda name: (tmp_path / name / "model.safetensors").stat().st_size  # noqa: E731
    saved = sum(e["parameters"][0] - e["parameters"][1] for e in layers.values() if e["rank"])
    # Smaller by the float32 weights saved (the factors are stored, not a dense product), give or take the header.
    assert saved > 0 and abs(size("dense") - size("low-rank") - 4 * saved) < 200 * len(layers)
    config = json.loads((tmp_path / "low-rank" / "config.json").read_text())
    assert config["hfcompress_factorized"]["ranks"] and config["architectures"] == [type(model).__name__]
    if family == "llama":  # plain from_pretrained loads, but with the factorized layers left random
        plain = AutoModelForCausalLM.from_pretrained(tmp_path / "low-rank")
        assert not torch.allclose(logits_of(plain, batch), logits_of(model, batch), atol=1e-3)


def _glue(tiny_glue_dir):
    return ["--task", "sst2", "--data-dir", str(tiny_glue_dir), "--latency-runs", "0", "--calibration-samples", "16"]


def _text(text_files):
    return ["--task", "causal-lm", "--train-file", str(text_files["train"]), "--validation-file",
            str(text_files["validation"]), "--block-size", "32", "--stride", "32", "--max-eval-samples", "4",
            "--latency-runs", "0", "--calibration-samples", "8"]  # fmt: skip


def test_classifier_recipe_factorize_then_evaluate_then_benchmark(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    import yaml

    recipe = {"task": "sst2", "data_dir": str(tiny_glue_dir), "model": str(tiny_teacher_dir), "latency_runs": 0,
              "steps": [{"factorize": {"rank": 8, "factorize_embeddings": True, "calibration_samples": 16}},
                        {"evaluate": {}}]}  # fmt: skip
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["run", str(tmp_path / "r.yaml"), "--output-dir", str(tmp_path / "recipe")]) == 0
    out = tmp_path / "recipe" / "01-factorize"
    report = json.loads((out / "compression.json").read_text())
    step = report["steps"][-1]
    settings = step["settings"]
    assert step["method"] == "low-rank factorization" and settings["rank"] == 8 and settings["method"] == "SVD"
    assert len(settings["ranks"]) == 4 * 6 + 1 and set(settings["ranks"].values()) == {8}  # 6 per block, embeddings
    assert (
        settings["weights_after"] < settings["weights_before"]
        and settings["parameters_after"] < (settings["parameters_before"])
    )
    assert report["result"]["size_bytes"] < 0.4 * report["source"]["size_bytes"]  # the 30522 x 32 table is 8 wide
    assert report["result"]["label"] == "factorized" and "plain_svd_output_error" not in str(settings["layers"])
    assert json.loads((out / "factorization.json").read_text())["ranks"] == settings["ranks"]
    card = (out / "README.md").read_text()
    assert "from hfcompress import load_model" in card and "low-rank" in card
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    exec(compile(snippet, "card-snippet", "exec"), {})  # the card's own usage code runs
    assert re.fullmatch(r"LABEL_[01]|negative|positive", capsys.readouterr().out.strip().splitlines()[-1])

    evaluation = json.loads((tmp_path / "recipe" / "02-evaluate.json").read_text())
    assert evaluation["model"] == str(out) and evaluation["parameters"] == report["result"]["parameters"]
    assert evaluation["metrics"] == report["result"]["metrics"]  # the reloaded model scores as the saved one did
    bench = tmp_path / "bench"
    args = [str(tiny_teacher_dir), str(out), *_glue(tiny_glue_dir)[:4], "--rounds", "1", "--latency-runs", "1"]
    assert main(["benchmark", *args, "--output-dir", str(bench)]) == 0
    rows = json.loads((bench / "benchmark.json").read_text())["rows"]
    assert rows[1]["parameters"] == report["result"]["parameters"] < rows[0]["parameters"]
    assert rows[1]["metrics"] == report["result"]["metrics"]

    # ONNX export takes the factorized layers (two MatMuls each); methods that load with from_pretrained refuse.
    quantize = ["quantize", str(out), *_glue(tiny_glue_dir)[:4], "--latency-runs", "0"]
    assert main([*quantize, "--method", "onnx-int8-dynamic", "--output-dir", str(tmp_path / "int8")]) == 0
    quantized = json.loads((tmp_path / "int8" / "compression.json").read_text())
    assert quantized["source"]["metrics"] == report["result"]["metrics"]
    assert quantized["result"]["quantization"]["checks"]["export_max_abs_diff"] < 1e-4
    capsys.readouterr()
    assert main([*quantize, "--method", "torchao-int8-weight", "--output-dir", str(tmp_path / "ao")]) == 2
    assert "has factorized (low-rank) layers, which torchao-int8-weight cannot load" in capsys.readouterr().err
    assert not (tmp_path / "ao").exists()


def test_whitened_budget_with_recovery_on_a_causal_lm(tmp_path, tiny_lm_dirs, text_files, capsys):
    out = tmp_path / "lm"
    args = ["factorize", str(tiny_lm_dirs["llama"]), "--parameter-ratio", "0.5", "--whiten", *_text(text_files),
            "--recovery-steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
            "--report_to", "none", "--output-dir", str(out)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    report = json.loads((out / "compression.json").read_text())
    settings = report["steps"][-1]["settings"]
    assert settings["method"] == "whitened SVD (SVD-LLM)" and settings["parameter_ratio"] == 0.5
    assert (
        settings["weights_after"] <= 0.5 * settings["weights_before"] and settings["details"]["layers_kept_dense"] == 0
    )
    assert len(set(settings["ranks"].values())) > 1  # the budget is spread unevenly, by energy
    for entry in settings["layers"].values():  # whitening is optimal for the layer's calibration outputs
        assert entry["output_error"] <= entry["plain_svd_output_error"] + 1e-6
    assert settings["output_error_mean"] < settings["plain_svd_output_error_mean"]
    assert settings["recovery_steps"] == 2 and settings["metrics_before_recovery"]["perplexity"] > 1
    assert (out / "training_args.json").is_file() and not list(out.glob("*.bin"))
    model = load_model(out)
    assert sum(isinstance(m, FactorizedLinear) for m in model.modules()) == 4 * 7
    assert "from hfcompress import load_model" in (out / "README.md").read_text()


def test_recovery_resumes_from_a_checkpoint_to_the_same_weights(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    from safetensors.torch import load_file

    args = ["factorize", str(tiny_teacher_dir), "--energy", "0.8", *_glue(tiny_glue_dir), "--recovery-steps", "2",
            "--per_device_train_batch_size", "8", "--report_to", "none", "--save_strategy", "steps",
            "--save_steps", "1"]  # fmt: skip
    assert main([*args, "--output-dir", str(tmp_path / "full")]) == 0, capsys.readouterr().err[-2000:]
    # A run killed after step 1 left its checkpoint in the staging folder; resuming it (as a recipe rerun does)
    # factorizes again, then restores the recovery's weights and optimizer from there.
    staging = tmp_path / ".resumed.partial"
    shutil.copytree(tmp_path / "full" / "checkpoint-1", staging / "checkpoint-1")
    (staging / ".hfcompress.lock").write_text(json.dumps({"pid": 2**22 + 1, "final": str(tmp_path / "resumed")}))
    resume = [*args, "--output-dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "true"]
    assert main(resume) == 0, capsys.readouterr().err[-2000:]
    full, resumed = (load_file(tmp_path / name / "model.safetensors") for name in ("full", "resumed"))
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--rank", "0"], "--rank must be at least 1, got 0."),
        (["--energy", "1.5"], "--energy is the fraction of singular-value energy kept, in (0, 1]; got 1.5."),
        (["--energy", "0"], "in (0, 1]; got 0.0."),
        (
            ["--rank", "4", "--energy", "0.9"],
            "Pass only one of --rank, --energy and --parameter-ratio, not --rank and",
        ),
        ([], "Say how much to keep: pass one of --rank, --energy or --parameter-ratio."),
        (["--parameter-ratio", "1"], "--parameter-ratio must be in (0, 1), got 1.0."),
        (["--rank", "4", "--modules", "q_proj("], "--modules 'q_proj(' is not a valid regular expression"),
        (["--rank", "4", "--modules", "nothing_here"], "No Linear layers match --modules 'nothing_here'"),
        (["--rank", "16", "--modules", "q_proj"], "--rank 16 saves parameters in none of the 4 targeted layers"),
        (["--parameter-ratio", "0.01"], "fewer than rank 1 in every targeted layer needs"),
        (["--rank", "4", "--dampening", "0.1"], "--dampening applies to --whiten only."),
        (["--rank", "4", "--factorize-embeddings", "--model", "gpt2"], "word embeddings are tied to the output layer"),
    ],
)
def test_bad_settings_fail_in_one_sentence(tmp_path, tiny_lm_dirs, text_files, extra, message, capsys):
    family = extra[extra.index("--model") + 1] if "--model" in extra else "llama"  # the source model, else Llama
    extra = extra[: extra.index("--model")] if "--model" in extra else extra
    source = tiny_lm_dirs[family]
    before = snapshot(source)
    out = tmp_path / "out"
    code = main(["factorize", str(source), *extra, *_text(text_files), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err[-2000:]
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and errors == [err.strip().splitlines()[-1]]  # one line, the last
    assert not out.exists() and not (tmp_path / ".out.partial").exists() and snapshot(source) == before

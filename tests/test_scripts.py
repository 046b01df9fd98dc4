"""Every benchmark script in scripts/ runs here with tiny settings, so none can rot; each test checks what the
script writes (its JSON, its folders), not only that it exits.

The scripts run in this process (runpy, with sys.argv patched), and so do the commands they start: a
`python -m hfcompress ...` or `python scripts/X.py ...` subprocess is served in process by `hfcompress.cli.main.main`
or runpy (see `serving`), which saves the ~10 s that a new interpreter spends importing torch, transformers and
hfcompress on every call. prune_glue.py and bench_teacher_cache.py are tested in test_prune_cli.py and
test_teacher_cache.py; bench_common.py is a library the others use.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SHARED_TEXT, tiny_classifier

SCRIPTS = ROOT / "scripts"
REAL_RUN = subprocess.run


def _served(command, **kwargs) -> subprocess.CompletedProcess | None:
    """Serve `python -m hfcompress ARGS` or `python scripts/X.py ARGS` in this process; None for anything else."""
    if not isinstance(command, list | tuple) or len(command) < 2 or command[0] != sys.executable:
        return None
    command = [str(c) for c in command]
    if command[1:3] == ["-m", "hfcompress"]:
        argv, target = ["hfcompress", *command[3:]], None
    elif command[1].endswith(".py") and Path(command[1]).parent == SCRIPTS:
        argv, target = command[1:], command[1]
    else:
        return None
    stdout = io.StringIO()
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(stdout) if kwargs.get("capture_output") else contextlib.nullcontext():
            if target is None:
                from hfcompress.cli.main import main

                code = main(argv[1:]) or 0
            else:
                try:
                    runpy.run_path(target, run_name="__main__")
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code or 0
    finally:
        sys.argv = saved
    if kwargs.get("check") and code != 0:
        raise subprocess.CalledProcessError(code, command)
    return subprocess.CompletedProcess(command, code, stdout=stdout.getvalue(), stderr="")


@contextlib.contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, cwd: Path):
    """Patch subprocess.run so the scripts' CLI and script calls run here; scripts/ importable (bench_common)."""

    def run(command, *args, **kwargs):
        served = _served(command, **kwargs)
        return served if served is not None else REAL_RUN(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.chdir(cwd)  # a default output folder (runs/...) lands in a temporary folder, never in the repository
    # One thread: the models are tiny, and a second thread only waits for its core when the machine is busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("bench_common", None)


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    with serving(monkeypatch, tmp_path):
        yield


def run_script(monkeypatch, name: str, *args) -> None:
    """Run scripts/NAME as `python scripts/NAME ARGS` would, in this process; it must exit with 0 (or return)."""
    script = SCRIPTS / name
    monkeypatch.setattr(sys, "argv", [str(script), *map(str, args)])
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"{name} exited with {exit_.code}"


def stdout_json(capsys) -> dict:
    """The JSON object a script printed last (scripts print progress lines before it)."""
    out = capsys.readouterr().out
    return json.loads(out[out.rindex("\n{") + 1 :] if not out.startswith("{") else out)


# --- latency -------------------------------------------------------------------------------------------------


def test_bench_latency(in_process, monkeypatch, capsys, tmp_path, tiny_teacher_dir):
    small = tmp_path / "two-layers"
    tiny_classifier("bert", layers=2).save_pretrained(small)
    run_script(monkeypatch, "bench_latency.py", tiny_teacher_dir, small, "--repeats", "2", "--threads", "1")
    summary = stdout_json(capsys)
    assert summary["setup"]["threads"] == 1 and summary["setup"]["seq_len"] == 128
    assert list(summary["latency_ms"]) == [str(tiny_teacher_dir), str(small)]
    for timings in summary["latency_ms"].values():
        assert set(timings) == {"batch_1", "batch_32"} and all(ms > 0 for ms in timings.values())
    assert summary["speedup_vs_first"][str(tiny_teacher_dir)] == {"batch_1": 1.0, "batch_32": 1.0}
    speedup = summary["speedup_vs_first"][str(small)]
    base, other = summary["latency_ms"][str(tiny_teacher_dir)], summary["latency_ms"][str(small)]
    assert speedup["batch_1"] == pytest.approx(base["batch_1"] / other["batch_1"], abs=1e-3)


def test_bench_lm_latency(in_process, monkeypatch, tmp_path, tiny_lm_dirs):
    output = tmp_path / "latency.json"
    llama, gpt2 = str(tiny_lm_dirs["llama"]), str(tiny_lm_dirs["gpt2"])
    run_script(monkeypatch, "bench_lm_latency.py", llama, gpt2, "--rounds", "2", "--repeats", "1", "--output-file",
               output)  # fmt: skip
    written = json.loads(output.read_text())
    assert written["setup"] == {"threads": 1, "rounds": 2, "repeats": 1, "baseline": llama}  # 1: see serving()
    assert list(written["results"]) == [llama, gpt2]
    for entry in written["results"].values():
        for key in ("prefill_batch_1", "decode_per_token"):
            assert 0 < entry[key]["min"] <= entry[key]["median"] <= entry[key]["max"]
        assert entry["decode_tokens_per_s"] == pytest.approx(1000 / entry["decode_per_token"]["median"])
    baseline = written["results"][llama]
    assert baseline["speedup_prefill_batch_1"] == {"median": 1.0, "min": 1.0, "max": 1.0}


# --- chunked KD memory -----------------------------------------------------------------------------------------


def test_bench_chunked_kd(in_process, monkeypatch, capsys):
    """Each mode's child process runs in this process here, so its peak-memory figure is not its own: only the
    plain step's floor is checked (its 256 x 36,000 fp32 teacher logits, 37 MB, are above glibc's largest mmap
    threshold, so they always take fresh pages); the losses of the plain and the chunked step must agree."""
    run_script(monkeypatch, "bench_chunked_kd.py", "--rounds", "1", "--vocab", "36000", "--hidden", "16", "--batch",
               "1", "--length", "256", "--chunk", "64")  # fmt: skip
    summary = stdout_json(capsys)
    plain, chunked = summary["plain"], summary["chunked-64"]
    assert plain["device"] == chunked["device"] == "cpu"
    assert chunked["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    for mode in (plain, chunked):
        assert mode["min_mib"] == mode["median_mib"] == mode["max_mib"]  # one round
    assert plain["median_mib"] > 30
    assert summary["ratio_chunked_to_plain"] == pytest.approx(chunked["median_mib"] / plain["median_mib"], abs=1e-4)
    assert summary["setup"] == {"rounds": 1, "vocab": 36000, "hidden": 16, "batch": 1, "length": 256, "chunk": 64,
                                "child": None}  # fmt: skip


# --- GLUE classification: distillation, pruning, quantization ---------------------------------------------------


def test_bench_distill(in_process, monkeypatch, capsys, tmp_path, tiny_glue_dir, tiny_teacher_dir):
    """The teacher is fine-tuned from the tiny 4-layer BERT (not MiniLM), then distilled into 2 of its layers."""
    out = tmp_path / "bench-distill"
    run_script(monkeypatch, "bench_distill.py", "--data-dir", tiny_glue_dir, "--train-samples", "16",
               "--teacher-epochs", "1", "--distill-epochs", "1", "--student-layers", "2", "--base-model",
               tiny_teacher_dir, "--latency-runs", "2", "--out", out)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary == stdout_json(capsys)
    assert (out / "teacher" / "compression.json").is_file() and (out / "student" / "compression.json").is_file()
    assert summary["train_samples"] == 16
    assert 0 <= summary["teacher_accuracy"] <= 1 and 0 <= summary["student_accuracy"] <= 1
    assert summary["accuracy_ratio"] == pytest.approx(summary["student_accuracy"] / summary["teacher_accuracy"], 1e-3)
    assert summary["student_layers"] == {"0": 0, "1": 3}  # student layer -> teacher layer (first and last)
    assert summary["teacher_layers"] == 4 and summary["dev_samples"] == 32  # the tiny teacher, tiny_glue_dir's dev
    teacher_params, student_params = summary["parameters"]
    assert student_params < teacher_params and summary["size_bytes"][1] < summary["size_bytes"][0]
    assert set(summary["latency_ms"][1]) == {"batch_1", "batch_32"} and summary["speedup"]


def test_bench_prune(in_process, monkeypatch, tmp_path, tiny_glue_dir, tiny_teacher_dir):
    """80% unstructured from the teacher, then a later stage that holds 0.8 and continues from it (its report
    compares with the teacher, its origin); every one of the 64 training rows (2 steps of 32 per epoch)."""
    out = tmp_path / "bench-prune"
    run_script(monkeypatch, "bench_prune.py", "--teacher", tiny_teacher_dir, "--data-dir", tiny_glue_dir,
               "--update-frequency", "1", "--latency-runs", "2", "--runs", "unstructured-80", "unstructured-80-stage2",
               "--out", out)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["unstructured-80", "unstructured-80-stage2"]
    first, second = summary["unstructured-80"], summary["unstructured-80-stage2"]
    for entry in (first, second):
        assert entry["sparsity_pruned_layers"] == pytest.approx(0.8, abs=0.01)
        assert 0 < entry["sparsity_all_weights"] < entry["sparsity_pruned_layers"]
        assert entry["train_rows"] == 64 and entry["max_steps"] == 2 and entry["end_step"] == 1
        assert entry["compressed_size_bytes"][1] < entry["size_bytes"][1]
        assert 0 <= entry["pruned_accuracy"] <= 1
    assert first["continued_from"] is None and second["continued_from"] == "unstructured-80"
    assert second["teacher_accuracy"] == first["teacher_accuracy"]  # both against the unpruned teacher
    assert second["learning_rate"] == 5e-5 and first["learning_rate"] == 1e-4
    assert (out / "unstructured-80-stage2" / "compression.json").is_file()


def test_bench_quantize(in_process, monkeypatch, tmp_path, tiny_glue_dir, quant_model_dir):
    """ONNX dynamic int8 (with its targets), static int8 (calibrated) and bitsandbytes NF4 on the tiny BERT."""
    out = tmp_path / "bench-quantize"
    methods = ["onnx-int8-dynamic", "onnx-int8-static", "bnb-nf4"]
    run_script(monkeypatch, "bench_quantize.py", "--model", quant_model_dir, "--data-dir", tiny_glue_dir, "--methods",
               *methods, "--latency-runs", "1", "--calibration-samples", "8", "--max-eval-samples", "16",
               "--out", out)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    name = quant_model_dir.name
    assert [(r["model"], r["method"]) for r in summary["rows"]] == [(name, m) for m in methods]
    for row in summary["rows"]:
        assert row["metric"] == "accuracy" and all(0 <= a <= 1 for a in row["dev"])
        assert row["size_ratio"] < 1 and row["size_mb"][1] < row["size_mb"][0]
        assert all(set(ms) == {"batch_1", "batch_32"} for ms in row["latency_ms"])
        assert (out / name / row["method"] / "compression.json").is_file()
    dynamic, static, nf4 = summary["rows"]
    assert set(dynamic["targets"]) == {"size", "speedup_batch_1", "accuracy_drop_points"}
    assert dynamic["targets"]["size"] == [dynamic["size_ratio"] <= 1 / 3.5, dynamic["size_ratio"]]
    assert "targets" not in static and "targets" not in nf4 and nf4["backend"] != dynamic["backend"]
    assert summary["exporters"] == {} and summary["targets"]["speedup_batch_1_min"] == 2.0
    table = (out / "summary.md").read_text()
    assert table.count(f"| {name} |") == 3 and "CPU latency: seq 128" in table


@pytest.mark.slow  # torch.export behind dynamo=True takes ~10 s whatever the model's size
def test_bench_quantize_compare_exporters(in_process, monkeypatch, tmp_path, tiny_glue_dir, quant_model_dir):
    out = tmp_path / "bench-quantize"
    run_script(monkeypatch, "bench_quantize.py", "--model", quant_model_dir, "--data-dir", tiny_glue_dir, "--methods",
               "onnx-int8-dynamic", "--latency-runs", "1", "--max-eval-samples", "8", "--compare-exporters",
               "--out", out)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    trial = summary["exporters"][quant_model_dir.name]
    assert trial["threads"] == 1 and trial["pytorch_fp32_batch_1_ms"] > 0
    for exporter in ("torchscript", "dynamo"):
        assert trial[exporter]["int8_batch_1_ms"] > 0
        assert trial[exporter]["speedup_vs_pytorch"] == pytest.approx(
            trial["pytorch_fp32_batch_1_ms"] / trial[exporter]["int8_batch_1_ms"], abs=0.01
        )
        assert isinstance(trial[exporter]["fused_operators"], dict)
    assert f"Exporter trial on {quant_model_dir.name}" in (out / "summary.md").read_text()


# --- causal LMs: the WikiText-2 teacher and students, then one-shot, structured pruning and quantization of it -----


@pytest.fixture(scope="module")
def clm(tmp_path_factory) -> Path:
    """scripts/bench_causal_lm.py's output folder, as the one-shot, structured and quantization scripts expect it:
    a 4-layer Llama teacher (hidden 32) trained for one epoch on 54 of WikiText-2's lines, a forward-KL student on
    its layers 0 and 3, the control, test perplexities. Built once for this module."""
    root = tmp_path_factory.mktemp("bench-clm")
    text = root / "wikitext-2"
    text.mkdir()
    for name, lines in (("valid.txt", 60), ("test.txt", 24)):
        cut = (SHARED_TEXT / name).read_text(encoding="utf-8").splitlines(keepends=True)[:lines]
        (text / name).write_text("".join(cut), encoding="utf-8")
    out = root / "clm"
    args = ["--out", out, "--text-dir", text, "--vocab", "512", "--block-size", "32", "--hidden-size", "32",
            "--intermediate-size", "64", "--num-layers", "4", "--layers", "0,3", "--teacher-epochs", "1",
            "--student-epochs", "1", "--runs", "teacher,forward_kl,control,test"]  # fmt: skip
    with pytest.MonkeyPatch.context() as monkeypatch, serving(monkeypatch, root):
        run_script(monkeypatch, "bench_causal_lm.py", *args)
    return out


def test_bench_causal_lm(clm):
    assert (clm / "train.txt").read_text().count("\n") == 54 and (clm / "heldout.txt").read_text().count("\n") == 6
    results = json.loads((clm / "results.json").read_text())
    assert list(results) == ["teacher", "student-forward_kl", "control"]  # the runs not asked for are left out
    for name, entry in results.items():
        assert (clm / f"test-{name}.json").is_file() and entry["perplexity"] > 1 and entry["bits_per_byte"] > 0
        assert entry["best_epoch"] == 1 and len(entry["heldout_history"]) == 1
        assert entry["ppl_vs_teacher"] == pytest.approx(entry["perplexity"] / results["teacher"]["perplexity"], 1e-3)
        assert entry["ppl_vs_control"] == pytest.approx(entry["perplexity"] / results["control"]["perplexity"], 1e-3)
    assert results["teacher"]["ppl_vs_teacher"] == 1.0 and results["control"]["ppl_vs_control"] == 1.0
    teacher = json.loads((clm / "teacher" / "config.json").read_text())
    student = json.loads((clm / "student-forward_kl" / "config.json").read_text())
    assert (teacher["num_hidden_layers"], teacher["hidden_size"], student["num_hidden_layers"]) == (4, 32, 2)
    assert results["student-forward_kl"]["parameters"] < results["teacher"]["parameters"]


def test_bench_oneshot(clm, in_process, monkeypatch, tmp_path):
    """Magnitude 50% and Wanda 2:4 with recovery steps, every model evaluated again on --test-file."""
    out = tmp_path / "bench-oneshot"
    test_file = clm.parent / "wikitext-2" / "test.txt"
    run_script(monkeypatch, "bench_oneshot.py", "--clm", clm, "--out", out, "--only",
               "magnitude-50,wanda-2of4-recovered", "--samples", "4", "--block-size", "32", "--recovery-steps", "2",
               "--test-file", test_file)  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["teacher", "magnitude-50", "wanda-2of4-recovered"]
    teacher_test = json.loads((clm / "test-teacher.json").read_text())["metrics"]["perplexity"]
    assert results["teacher"]["perplexity"] == pytest.approx(teacher_test)  # the same text, the same model
    for name in ("magnitude-50", "wanda-2of4-recovered"):
        entry = results[name]
        assert entry["sparsity"] == pytest.approx(0.5, abs=0.01) and entry["peak_rss_mb"] > 0
        assert entry["pruning_seconds"] >= 0 and entry["heldout"] > 1 and (out / f"test-{name}.json").is_file()
        assert entry["ppl_vs_teacher"] == pytest.approx(entry["perplexity"] / results["teacher"]["perplexity"], 1e-3)
    assert results["magnitude-50"]["heldout_before_recovery"] is None
    assert results["wanda-2of4-recovered"]["heldout_before_recovery"] > 1


def test_bench_structured(clm, in_process, monkeypatch, tmp_path):
    """Width (hidden 32 -> 16, FFN 64 -> 32) and depth (4 blocks -> 1), with recovery; latency of all three."""
    out = tmp_path / "bench-structured"
    run_script(monkeypatch, "bench_structured.py", "--clm", clm, "--out", out, "--only", "width-half,depth-1",
               "--samples", "4", "--block-size", "32", "--recovery-steps", "2", "--hidden-size", "16", "--ffn-size",
               "32", "--latency-rounds", "1")  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["teacher", "width-half", "depth-1"]
    assert results["teacher"]["ppl_vs_teacher"] == 1.0 and results["teacher"]["parameters_vs_teacher"] == 1.0
    for name in ("width-half", "depth-1"):
        entry = results[name]
        assert entry["parameters_vs_teacher"] < 1 and entry["heldout_before_recovery"] > 1
        assert entry["pruning_seconds"] >= 0
    assert results["depth-1"]["removed_blocks"] and len(results["depth-1"]["removed_blocks"]) == 3
    width = json.loads((out / "width-half" / "config.json").read_text())
    assert (width["hidden_size"], width["intermediate_size"]) == (16, 32)
    latency = json.loads((out / "latency.json").read_text())
    assert latency["setup"]["rounds"] == 1 and len(latency["results"]) == 3
    for entry in results.values():
        assert entry["latency"]["prefill_batch_1"]["median"] > 0 and entry["latency"]["decode_tokens_per_s"] > 0


def test_bench_quantize_lm(clm, in_process, monkeypatch, tmp_path):
    """torchao int8 weight-only and bitsandbytes int8 of the teacher, perplexity on the test text; no latency (its
    join, bench_common.add_latency, runs in test_bench_structured)."""
    out = tmp_path / "bench-quantize-lm"
    test_file = clm.parent / "wikitext-2" / "test.txt"
    run_script(monkeypatch, "bench_quantize_lm.py", "--clm", clm, "--out", out, "--methods",
               "torchao-int8-weight,bnb-int8", "--block-size", "32", "--latency-rounds", "0", "--test-file",
               test_file)  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["fp32", "torchao-int8-weight", "bnb-int8"]
    fp32 = results["fp32"]
    teacher_test = json.loads((clm / "test-teacher.json").read_text())["metrics"]["perplexity"]
    assert fp32["perplexity"] == pytest.approx(teacher_test) and fp32["ppl_vs_fp32"] == 1.0
    for name in ("torchao-int8-weight", "bnb-int8"):
        entry = results[name]
        assert (out / name / "compression.json").is_file()
        assert entry["ppl_vs_fp32"] == pytest.approx(1, abs=0.05)  # int8 weights barely move the perplexity
        assert entry["blocks_smaller_than_fp32"] > 1.5 and entry["block_bytes"] < fp32["block_bytes"]
        assert entry["smaller_than_fp32"] == pytest.approx(fp32["size_bytes"] / entry["size_bytes"], abs=1e-3)
    assert not (out / "latency.json").exists() and all("latency" not in entry for entry in results.values())


def test_bench_toolbox(clm, in_process, monkeypatch, tmp_path):
    """Issue 15's comparisons with tiny settings: low rank with recovery, taylor importance, L1 + GMP, mixed int8."""
    out = tmp_path / "bench-toolbox"
    run_script(monkeypatch, "bench_toolbox.py", "--clm", clm, "--out", out, "--only",
               "lowrank-svd,importance-taylor,l1-gmp,int8-mixed,ft-l1,ft-l1-magnitude", "--samples", "4",
               "--block-size", "32",
               "--recovery-steps", "2", "--importance-ffn-size", "32", "--gmp-steps", "4", "--sparsity", "0.5",
               "--scan-samples", "8", "--int8-max-drop", "0.5")  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["lowrank-svd", "importance-taylor", "l1-gmp", "int8-mixed", "ft-l1", "ft-l1-magnitude"]
    assert results["ft-l1"]["l1_weight"] == 5e-6 and results["ft-l1-magnitude"]["sparsity"] == pytest.approx(0.5)
    pruned = json.loads((out / "ft-l1-magnitude" / "compression.json").read_text())
    assert pruned["source"]["model"].endswith("ft-l1")  # pruned from the L1-trained model, not the teacher
    teacher = json.loads((clm / "teacher" / "config.json").read_text())
    for name, entry in results.items():
        if name == "ft-l1":  # finetune does not evaluate the model it starts from
            assert entry["teacher_perplexity"] is None and entry["ppl_vs_teacher"] is None
            continue
        assert entry["perplexity"] > 1 and entry["teacher_perplexity"] > 1
        assert entry["ppl_vs_teacher"] == pytest.approx(entry["perplexity"] / entry["teacher_perplexity"], 1e-3)
    assert results["lowrank-svd"]["parameters_vs_teacher"] < 1 and results["lowrank-svd"]["perplexity_before_recovery"]
    assert results["importance-taylor"]["importance"] == "taylor"
    assert json.loads((out / "importance-taylor" / "config.json").read_text())["intermediate_size"] == 32
    assert teacher["intermediate_size"] == 64
    assert results["l1-gmp"]["l1_weight"] == 5e-6
    scan = results["int8-mixed"]["scan"]
    assert scan["max_drop"] == 0.5 and scan["rows"] == 8 and scan["split"] == "train" and scan["drop"] <= 0.5
    assert len(scan["most_sensitive"]) == 5


@pytest.fixture(scope="module")
def glue_teacher(tmp_path_factory, tokenizer, tiny_glue_dir) -> Path:
    """bench_toolbox_glue.py's teacher: a tiny BERT whose FFN is four times its hidden size, as MiniLM's (32 -> 128,
    4 layers), fine-tuned for two epochs on tiny_glue_dir's sst2 with `hfcompress finetune`."""
    from hfcompress.cli.main import main

    root = tmp_path_factory.mktemp("glue-teacher")
    tiny_classifier("bert", intermediate_size=128).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    with pytest.MonkeyPatch.context() as monkeypatch, serving(monkeypatch, root):
        main(["finetune", str(root / "base"), "--task", "sst2", "--data-dir", str(tiny_glue_dir), "--num_train_epochs",
              "2", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--report_to", "none",
              "--save_strategy", "no", "--latency-runs", "0", "--output-dir", str(root / "teacher")])  # fmt: skip
    return root / "teacher"


def test_bench_toolbox_glue(glue_teacher, in_process, monkeypatch, tmp_path, tiny_glue_dir):
    """Issue 15's comparisons on a classifier teacher with tiny settings: low rank against FFN pruning at the same
    parameter count, taylor importance with no recovery, L1 + GMP, L1 then one-shot magnitude, mixed ONNX int8;
    their latency from one `hfcompress benchmark`; a second invocation runs nothing again."""
    from safetensors.torch import load_file

    out = tmp_path / "bench-toolbox-glue"
    chosen = ["lowrank-svd", "ffn-equal", "importance-taylor", "l1-gmp", "ft-l1", "ft-l1-magnitude", "onnx-int8-mixed"]
    args = ["--teacher", glue_teacher, "--data-dir", tiny_glue_dir, "--out", out, "--samples", "16",
            "--max-train-samples", "32", "--steps", "2", "--batch-size", "8", "--scan-samples", "8", "--max-drop",
            "50"]  # fmt: skip
    run_script(monkeypatch, "bench_toolbox_glue.py", *args, "--only", ",".join(chosen), "--latency-rounds", "1")
    results = json.loads((out / "results.json").read_text())
    assert list(results) == chosen
    teacher_accuracy = json.loads((glue_teacher / "compression.json").read_text())["result"]["metrics"]["accuracy"]
    for name, entry in results.items():
        assert 0 <= entry["accuracy"] <= 1 and entry["command"].startswith("hfcompress ")
        assert entry["latency_ms"]["batch_1"] > 0 and entry["speedup_vs_teacher"]["batch_32"] > 0
        if name == "ft-l1":  # finetune does not evaluate the model it starts from
            assert entry["teacher_accuracy"] is None and entry["accuracy_vs_teacher"] is None
            continue
        source = results["ft-l1"]["accuracy"] if name == "ft-l1-magnitude" else teacher_accuracy
        assert entry["teacher_accuracy"] == pytest.approx(source)  # measured again, in the run's own command
        assert entry["accuracy_vs_teacher"] == pytest.approx(entry["accuracy"] / entry["teacher_accuracy"], abs=1e-4)
    lowrank, ffn = results["lowrank-svd"], results["ffn-equal"]
    assert lowrank["accuracy_before_recovery"] is not None and "--recovery-steps 2" in lowrank["command"]
    # 128 - round(half of the 4 x 12,288 Linear weights / (4 layers x 65 per neuron)): the same parameters removed
    assert ffn["ffn_size"] == 33 and "--teacher" in ffn["command"]
    removed = lowrank["teacher_parameters"] - lowrank["parameters"]
    assert abs(ffn["parameters"] - lowrank["parameters"]) < 0.01 * removed
    taylor = results["importance-taylor"]
    assert taylor["importance"] == "taylor" and taylor["ffn_size"] == 64 and "accuracy_before_recovery" not in taylor
    before = load_file(glue_teacher / "model.safetensors")
    after = load_file(out / "importance-taylor" / "model.safetensors")
    resized = [key for key, tensor in before.items() if after[key].shape != tensor.shape]
    assert len(resized) == 4 * 3  # per layer: the FFN's in-projection (weight, bias) and out-projection weight
    assert all(torch.equal(after[key], tensor) for key, tensor in before.items() if key not in resized)  # no training
    for name in ("l1-gmp", "ft-l1-magnitude"):
        assert results[name]["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert results["l1-gmp"]["l1_weight"] == results["ft-l1"]["l1_weight"] == 5e-6
    pruned = json.loads((out / "ft-l1-magnitude" / "compression.json").read_text())
    assert pruned["source"]["model"].endswith("ft-l1")  # pruned from the L1-trained model, not the teacher
    mixed = results["onnx-int8-mixed"]
    assert mixed["scan"]["max_drop"] == 50 and mixed["scan"]["rows"] == 8 and mixed["scan"]["split"] == "train"
    assert mixed["scan"]["drop"] <= 50 and len(mixed["scan"]["most_sensitive"]) == 5 and mixed["size_vs_teacher"] < 0.5
    assert len(json.loads((out / "benchmark" / "benchmark.json").read_text())["rows"]) == 1 + len(chosen)
    written = {name: (out / name / "compression.json").stat().st_mtime_ns for name in chosen}
    run_script(monkeypatch, "bench_toolbox_glue.py", *args, "--only", "lowrank-svd,ffn-equal")
    assert {name: (out / name / "compression.json").stat().st_mtime_ns for name in chosen} == written
    assert json.loads((out / "results.json").read_text()) == results  # latency kept from the first invocation


def test_bench_smollm_shape(clm, in_process, monkeypatch, tmp_path):
    """SmolLM2-135M's layout at a tiny width: Wanda, width pruning and torchao int8, with interleaved latency."""
    out = tmp_path / "bench-smollm"
    run_script(monkeypatch, "bench_smollm_shape.py", "--clm", clm, "--out", out, "--only",
               "wanda-50,width-half,torchao-int8-weight", "--samples", "2", "--block-size", "32", "--hidden-size",
               "72", "--intermediate-size", "96", "--num-layers", "2", "--width-hidden", "48", "--width-ffn", "64",
               "--width-heads", "6", "--latency-rounds", "1")  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["base", "wanda-50", "width-half", "torchao-int8-weight"]
    base = json.loads((out / "base" / "config.json").read_text())
    assert (base["num_attention_heads"], base["num_key_value_heads"], base["vocab_size"]) == (9, 3, 49152)
    assert base["tie_word_embeddings"] is True and base["hidden_size"] == 72
    assert results["wanda-50"]["peak_rss_bytes"] > 0 and results["wanda-50"]["parameters_vs_base"] == 1.0
    width = json.loads((out / "width-half" / "config.json").read_text())
    assert (width["hidden_size"], width["intermediate_size"], width["num_attention_heads"]) == (48, 64, 6)
    assert results["width-half"]["parameters_vs_base"] < 0.8
    assert results["torchao-int8-weight"]["smaller_on_disk"] > 1
    for entry in results.values():
        assert entry["latency"]["prefill_batch_1"]["median"] > 0

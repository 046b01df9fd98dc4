"""`hfcompress run`: recipes checked before anything runs, steps chained, finished steps skipped, kills resumed."""

import json
import signal
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, snapshot
from test_reliability import start_cli, wait_for

from hfcompress.cli.main import main
from hfcompress.recipes import preset_names


def write_recipe(path, data) -> str:
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return str(path)


def base(model, glue, **extra):
    return {"task": "sst2", "data_dir": str(glue), "model": str(model), "latency_runs": 0, **extra}


def test_two_steps_resume_after_a_kill_then_skip_then_rerun_what_changed(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    recipe = base(tiny_teacher_dir, tiny_glue_dir, max_steps=60, save_strategy="steps", save_steps=10,
                  per_device_train_batch_size=4, report_to="none")  # fmt: skip
    recipe["steps"] = [{"distill": {"student_layers": "2"}}, {"evaluate": {}}]
    path, out = write_recipe(tmp_path / "r.yaml", recipe), tmp_path / "out"

    process = start_cli("run", path, "--output-dir", out)
    wait_for(out / ".01-distill.partial" / "checkpoint-10", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "01-distill").exists()
    assert json.loads((out / "recipe.json").read_text())["steps"]["01-distill"]["status"] == "started"

    result = run_cli("run", path, "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Step 1/2 01-distill: resumed" in result.stdout
    record = json.loads((out / "recipe.json").read_text())
    assert record["final"] == str(out / "01-distill")
    assert [record["steps"][s]["ran"] for s in ("01-distill", "02-evaluate")] == ["resumed", "run"]
    settings = json.loads((out / "01-distill" / "compression.json").read_text())["steps"][-1]["settings"]
    assert settings["resumed_at_step"] >= 10 and settings["steps_done"] == 60
    evaluation = json.loads((out / "02-evaluate.json").read_text())
    assert evaluation["model"] == str(out / "01-distill")
    assert record["summary"][1]["score"] == evaluation["score"] == record["summary"][0]["score"]

    before = snapshot(out / "01-distill")
    assert main(["run", path, "--output-dir", str(out)]) == 0  # nothing changed: every step skipped
    assert snapshot(out / "01-distill") == before
    assert {s["ran"] for s in json.loads((out / "recipe.json").read_text())["steps"].values()} == {"skipped"}

    # A changed evaluation option reruns that step only; the trained student is kept as it was.
    recipe["steps"][1] = {"evaluate": {"max_eval_samples": 8}}
    write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", path, "--output-dir", str(out)]) == 0
    steps = json.loads((out / "recipe.json").read_text())["steps"]
    assert (steps["01-distill"]["ran"], steps["02-evaluate"]["ran"]) == ("skipped", "run")
    assert snapshot(out / "01-distill") == before
    assert (out / "02-evaluate.json").is_file()


def test_a_chain_of_steps_with_references(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    recipe = base(tiny_teacher_dir, tiny_glue_dir, max_steps=3, report_to="none")
    recipe["steps"] = [
        {"distill": {"student_layers": "2"}},
        {"prune": {"structure": "ffn", "sparsity": 0.5, "teacher": "@model"}},
        {"prune": {"model": "@01-distill", "sparsity": 0.5}},
    ]
    out = tmp_path / "out"
    assert main(["run", write_recipe(tmp_path / "r.yaml", recipe), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Final model:" in printed
    ffn = json.loads((out / "02-prune" / "compression.json").read_text())
    assert ffn["source"]["model"] == str(out / "01-distill") and ffn["steps"][-1]["settings"]["structure"] == "ffn"
    assert ffn["steps"][0]["method"] == "distillation"  # the lineage reaches back through the first step
    assert json.loads((out / "03-prune" / "compression.json").read_text())["source"]["model"] == str(
        out / "01-distill"
    )
    record = json.loads((out / "recipe.json").read_text())
    assert record["final"] == str(out / "03-prune")
    seconds = [record["steps"][folder]["seconds"] for folder in ("01-distill", "02-prune", "03-prune")]
    assert all(s > 0 for s in seconds) and record["seconds"] == pytest.approx(sum(seconds), abs=0.2)
    assert "Wall time of the steps:" in printed


STEP = [{"distill": {"student_layers": "2"}}]
BAD = [
    ({"steps": STEP, "colour": "red"}, "no step's command knows: colour"),
    ({"steps": [{"distill": {"student_layerz": "2"}}]}, "`hfcompress distill` does not know: student_layerz"),
    ({"steps": [{"prune": {"sparsity": 1.5}}]}, "Step 1 (prune): Sparsity must be in [0, 1)"),
    ({"steps": [{"distill": {"student": "@02-prune"}}, {"prune": {}}]}, "'@02-prune', which no earlier step produces"),
    (
        {"steps": [{"quantize": {"method": "onnx-int8-dynamic"}}, {"prune": {}}]},
        "from the quantized model of 01-quantize",
    ),
    ({"steps": [{"bake": {}}]}, "steps are finetune, distill, prune, factorize, quantize, evaluate, push"),
    ({"steps": [{"distill": {"output_dir": "x"}}]}, "each step writes its own folder"),
    ({"steps": []}, "needs a non-empty list under 'steps:'"),
    ({"model": "{missing}", "steps": STEP}, "Step 1 (distill)'s model:"),
    ({"model": "{lm}", "steps": STEP}, "Step 1 (distill)"),
    ("steps: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML for safe loading"),
]


@pytest.mark.parametrize("data,message", BAD)
def test_bad_recipes_fail_before_anything_runs(tmp_path, tiny_teacher_dir, tiny_glue_dir, tiny_lm_dirs, data, message,
                                              capsys):  # fmt: skip
    models = {"missing": str(tmp_path / "nope"), "lm": str(tiny_lm_dirs["llama"])}
    if isinstance(data, dict):
        data = {**base(tiny_teacher_dir, tiny_glue_dir), **data}
        data["model"] = data["model"].format(**models)
    out = tmp_path / "out"
    assert main(["run", write_recipe(tmp_path / "r.yaml", data), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("hfcompress run: error: "), err
    assert not out.exists()


def test_an_output_dir_that_is_not_a_recipes_is_left_alone(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("someone else's")
    data = {**base(tiny_teacher_dir, tiny_glue_dir), "steps": STEP}
    assert main(["run", write_recipe(tmp_path / "r.yaml", data), "--output-dir", str(out)]) == 2
    assert "holds no recipe.json" in capsys.readouterr().err
    assert snapshot(out) == {"model.safetensors": b"someone else's"}


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_checks_out(preset, tmp_path, tiny_teacher_dir, tiny_glue_dir, tiny_lm_dirs, text_files, capsys):
    if preset.startswith("llm"):
        data = ["--model", tiny_lm_dirs["llama"], "--train-file", text_files["train"],
                "--validation-file", text_files["validation"]]  # fmt: skip
    else:
        data = ["--model", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir]
    assert main(["run", preset, "--output-dir", str(tmp_path / "out"), "--check", *map(str, data)]) == 0
    out = capsys.readouterr().out
    assert "all checked" in out and f"01-{'prune' if preset.startswith('llm') else 'distill'}" in out
    assert not (tmp_path / "out").exists()


SCRIPT_RECIPES = sorted((Path(__file__).resolve().parents[1] / "scripts" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", SCRIPT_RECIPES, ids=lambda p: p.stem)
def test_benchmark_recipes_check_out(recipe, tmp_path, tiny_teacher_dir, tiny_glue_dir, tiny_lm_dirs, text_files,
                                     capsys):  # fmt: skip
    content = yaml.safe_load(recipe.read_text())
    steps = content["steps"]
    if content["task"] == "causal-lm":
        data = ["--model", tiny_lm_dirs["llama"], "--train-file", text_files["train"],
                "--validation-file", text_files["validation"]]  # fmt: skip
    else:  # the benchmark's own data and model would do too, but the tiny ones keep this fast
        data = ["--model", tiny_teacher_dir, "--data-dir", tiny_glue_dir]
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "out"), "--check", *map(str, data)]) == 0
    out = capsys.readouterr().out
    assert "all checked" in out and f"{len(steps):02d}-{next(iter(steps[-1]))}" in out
    assert not (tmp_path / "out").exists()

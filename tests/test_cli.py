"""The CLI as a user runs it: real subprocesses, real files, exit codes and messages."""

import json

import pytest
import torch
from conftest import run_cli, snapshot, tiny_config
from transformers import AutoModelForSequenceClassification

TRAIN_FLAGS = ["--per-device-train-batch-size", "8", "--learning-rate", "1e-3", "--latency-runs", "1"]


def assert_no_pickles(path):
    pickled = [p.name for p in path.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert not pickled, pickled


def test_distill_end_to_end(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "student"
    result = run_cli(
        "distill",
        tiny_teacher_dir,
        "--task",
        "sst2",
        "--data-dir",
        tiny_glue_dir,
        "--student-layers",
        "2",
        "--max-steps",
        "6",
        "--output-dir",
        out,
        *TRAIN_FLAGS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"model.safetensors", "config.json", "tokenizer.json", "compression.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not (out / "teacher").exists()  # the tiny teacher is already a 2-label classifier
    assert_no_pickles(out)

    report = json.loads((out / "compression.json").read_text())
    assert report["task"] == "sst2"
    assert report["command"].startswith("hfcompress distill ")
    assert 0.0 <= report["result"]["metrics"]["accuracy"] <= 1.0
    assert report["source"]["parameters"] > report["result"]["parameters"] > 0
    assert report["result"]["size_bytes"] == (out / "model.safetensors").stat().st_size
    assert report["ratios"]["score"] == pytest.approx(report["result"]["score"] / report["source"]["score"], abs=1e-3)
    assert set(report["result"]["latency_ms"]) == {"batch_1", "batch_32"}
    assert report["steps"][-1]["method"] == "distillation"
    assert report["steps"][-1]["settings"]["layer_map"] == {"0": 0, "1": 3}
    assert report["versions"]["transformers"].startswith("5.")
    assert "GLUE score" in result.stdout and "latency batch 1" in result.stdout

    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2
    assert student.config.id2label == {0: "negative", 1: "positive"}

    # `evaluate` on the saved student reproduces the accuracy in compression.json.
    eval_json = tmp_path / "eval.json"
    result = run_cli(
        "evaluate",
        out,
        "--task",
        "sst2",
        "--data-dir",
        tiny_glue_dir,
        "--latency-runs",
        "0",
        "--output-file",
        eval_json,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads(eval_json.read_text())
    assert evaluated["metrics"] == report["result"]["metrics"]
    assert "accuracy" in result.stdout


def test_distill_fine_tunes_a_base_teacher_first(tmp_path, tokenizer, tiny_glue_dir):
    from transformers import AutoModel

    base = tmp_path / "base"
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config("bert")).save_pretrained(base)  # no classification head
    tokenizer.save_pretrained(base)
    out = tmp_path / "out"
    result = run_cli(
        "distill",
        base,
        "--task",
        "sst2",
        "--data-dir",
        tiny_glue_dir,
        "--max-steps",
        "3",
        "--output-dir",
        out,
        *TRAIN_FLAGS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fine-tuning it first" in result.stdout
    teacher = AutoModelForSequenceClassification.from_pretrained(out / "teacher")
    assert teacher.config.num_hidden_layers == 4
    report = json.loads((out / "compression.json").read_text())
    assert [step["method"] for step in report["steps"]] == ["finetune", "distillation"]
    assert report["source"]["model"] == str(out / "teacher")
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_hidden_layers == 2  # half of 4


def test_finetune_and_config_file(tmp_path, tokenizer, tiny_glue_dir):
    from transformers import AutoModel

    base = tmp_path / "base"
    AutoModel.from_config(tiny_config("bert")).save_pretrained(base)
    tokenizer.save_pretrained(base)
    config = tmp_path / "run.yaml"
    config.write_text(f"task: sst2\ndata_dir: {tiny_glue_dir}\nmax_steps: 2\nlearning_rate: 0.002\n")
    out = tmp_path / "ft"
    result = run_cli("finetune", base, "--config", config, "--output-dir", out, "--latency-runs", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    args = json.loads((out / "training_args.json").read_text())
    assert args["max_steps"] == 2 and args["learning_rate"] == 0.002
    report = json.loads((out / "compression.json").read_text())
    assert report["steps"][0]["method"] == "finetune" and "accuracy" in report["result"]["metrics"]
    assert_no_pickles(out)


def test_help_and_unknown_command():
    result = run_cli("distill", "--help")
    assert result.returncode == 0
    assert "--student-layers" in result.stdout and "--learning_rate" in result.stdout
    result = run_cli("compress-everything")
    assert result.returncode == 2 and "unknown command" in result.stderr


def _bad_input_cases(tiny_teacher_dir, tiny_glue_dir, tmp_path):
    wrong_columns = tmp_path / "wrong.csv"
    wrong_columns.write_text("text,label\ngreat,1\n")
    other_vocab = tmp_path / "other-vocab"
    return {
        "unknown task": (["--task", "sst3", "--data-dir", tiny_glue_dir], "Unknown GLUE task 'sst3'"),
        "missing data dir": (["--task", "sst2", "--data-dir", tmp_path / "nope"], "nope"),
        "missing file": (["--task", "sst2", "--train-file", tmp_path / "missing.csv"], "missing.csv"),
        "wrong columns": (
            ["--task", "sst2", "--train-file", wrong_columns, "--validation-file", wrong_columns],
            "sentence",
        ),
        "temperature": (
            ["--task", "sst2", "--data-dir", tiny_glue_dir, "--temperature", "0"],
            "temperature must be greater than 0",
        ),
        "zero weights": (
            ["--task", "sst2", "--data-dir", tiny_glue_dir, "--distill-weight", "0", "--hard-label-weight", "0"],
            "all of them are 0",
        ),
        "too many layers": (
            ["--task", "sst2", "--data-dir", tiny_glue_dir, "--student-layers", "9"],
            "between 1 and the teacher's 4 layers",
        ),
        "both students": (
            ["--task", "sst2", "--data-dir", tiny_glue_dir, "--student-layers", "2", "--student", tiny_teacher_dir],
            "either --student or --student-layers",
        ),
        "mismatched tokenizer": (
            ["--task", "sst2", "--data-dir", tiny_glue_dir, "--student", other_vocab],
            "different vocabularies",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown task",
        "missing data dir",
        "missing file",
        "wrong columns",
        "temperature",
        "zero weights",
        "too many layers",
        "both students",
        "mismatched tokenizer",
    ],
)
def test_bad_input_fails_fast_and_writes_nothing(case, tmp_path, tiny_teacher_dir, tiny_glue_dir):
    if case == "mismatched tokenizer":
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        words = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "good": 4, "bad": 5}
        raw = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        fast = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]")
        path = tmp_path / "other-vocab"
        AutoModelForSequenceClassification.from_config(tiny_config("bert", layers=2)).save_pretrained(path)
        fast.save_pretrained(path)
    args, message = _bad_input_cases(tiny_teacher_dir, tiny_glue_dir, tmp_path)[case]
    out = tmp_path / "out"
    result = run_cli("distill", tiny_teacher_dir, *args, "--output-dir", out)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_offline_hub_model_is_one_sentence(tmp_path, tiny_glue_dir):
    out = tmp_path / "out"
    result = run_cli("distill", "bert-base", "--task", "sst2", "--data-dir", tiny_glue_dir, "--output-dir", out)
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1
    assert "google-bert/bert-base-uncased" in error_lines[0] and "Hub is unreachable" in error_lines[0]
    assert "Traceback" not in result.stderr and not out.exists()


def test_existing_output_dir_is_refused_and_untouched(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    before = snapshot(out)
    result = run_cli("distill", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, "--output-dir", out)
    assert result.returncode == 2
    assert "already exists and is not empty" in result.stderr and "--overwrite_output_dir" in result.stderr
    assert snapshot(out) == before


def test_evaluate_refuses_untrained_head(tmp_path, tokenizer, tiny_glue_dir):
    from transformers import AutoModel

    base = tmp_path / "base"
    AutoModel.from_config(tiny_config("bert")).save_pretrained(base)
    tokenizer.save_pretrained(base)
    result = run_cli("evaluate", base, "--task", "sst2", "--data-dir", tiny_glue_dir)
    assert result.returncode == 2
    assert "no classification head trained for sst2" in result.stderr and "hfcompress finetune" in result.stderr

"""Bad input ends in one sentence before any long work, with nothing written; summaries show only what was measured.

In process (`hfcompress.cli.main.main`), so each case costs a fraction of a second; `no_training` makes any
Trainer.train call fail the test, which proves a check ran before training.
"""

import json
import shutil

import pytest
import torch
from conftest import snapshot

from hfcompress.cli.main import main

FAST = ["--latency-runs", "0", "--max-steps", "2", "--per-device-train-batch-size", "8", "--report_to", "none"]


@pytest.fixture
def no_training(monkeypatch):
    from transformers import Trainer

    def refuse(*args, **kwargs):
        raise AssertionError("training started although the input was bad")

    monkeypatch.setattr(Trainer, "train", refuse)


def glue_copy(tmp_path, tiny_glue_dir, train: bytes | None = None, dev: bytes | None = None):
    """tmp_path/glue/SST-2 with the tiny task's files, `train` / `dev` replacing theirs when given."""
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for name, data in (("train.tsv", train), ("dev.tsv", dev)):
        (folder / name).write_bytes((tiny_glue_dir / "sst2" / name).read_bytes() if data is None else data)
    return folder


def lines_of(tiny_glue_dir, name="train.tsv") -> list[bytes]:
    return (tiny_glue_dir / "sst2" / name).read_bytes().split(b"\n")


def run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    return code, err


def one_error(err: str) -> str:
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


# --- 1. a byte that is not UTF-8 ------------------------------------------------------------------------------


@pytest.mark.parametrize("split,line", [("train.tsv", 5), ("dev.tsv", 3)])
def test_a_non_utf8_byte_names_the_file_and_line(split, line, tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys,
                                                 no_training):  # fmt: skip
    lines = lines_of(tiny_glue_dir, split)
    lines[line - 1] = lines[line - 1][:4] + b"\xe9t\xe9" + lines[line - 1][4:]  # Latin-1 "été"
    folder = glue_copy(tmp_path, tiny_glue_dir, **{split.removesuffix(".tsv"): b"\n".join(lines)})
    before = snapshot(tmp_path)
    code, err = run(["finetune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tmp_path / "glue", *FAST,
                     "--output-dir", tmp_path / "out"], capsys)  # fmt: skip
    assert code == 2
    assert f"File {folder / split} is not UTF-8 text: line {line} holds the byte 0xe9" in one_error(err)
    assert snapshot(tmp_path) == before


def test_evaluate_does_not_read_the_train_file(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys, caplog):
    glue_copy(tmp_path, tiny_glue_dir, train=b"sentence\tlabel\n\xff\xfe broken\t1\nragged\n")
    code, err = run(["evaluate", tiny_teacher_dir, "--task", "sst2", "--data-dir", tmp_path / "glue",
                     "--latency-runs", "0"], capsys)  # fmt: skip
    assert code == 0, err[-3000:]
    assert "train.tsv" not in err + caplog.text


# --- 2, 3. empty or all-malformed splits, checked before training -----------------------------------------------


HEADER_ONLY = b"sentence\tlabel\n"
EMPTY_SPLITS = [
    *[(command, "train", HEADER_ONLY, "The train split of sst2 holds no rows.") for command in ("finetune",
                                                                                               "distill")],
    *[(command, "dev", HEADER_ONLY, "The validation split of sst2 holds no rows.")
      for command in ("finetune", "distill", "prune")],
    # The loader every command shares refuses a file of malformed rows; one command shows it.
    ("finetune", "train", HEADER_ONLY + b"one field only\n\nthree\tfields\there\n",
     "train.tsv has no usable rows: all 2 are malformed (not 2 tab-separated fields on lines 2, 4)."),
    ("prune", "train", HEADER_ONLY + b"no label\t\n", "train.tsv has no usable rows: all 1 are malformed (no label"),
]  # fmt: skip


@pytest.mark.parametrize("command,split,data,message", EMPTY_SPLITS)
def test_empty_splits_are_refused_before_training(command, split, data, message, tmp_path, tiny_teacher_dir,
                                                  tiny_glue_dir, capsys, no_training):  # fmt: skip
    glue_copy(tmp_path, tiny_glue_dir, **{split: data})
    before = snapshot(tmp_path)
    extra = {"distill": ["--student-layers", "2"], "prune": ["--method", "wanda"]}.get(command, [])
    code, err = run([command, tiny_teacher_dir, "--task", "sst2", "--data-dir", tmp_path / "glue", *extra, *FAST,
                     "--output-dir", tmp_path / "out"], capsys)  # fmt: skip
    assert code == 2 and message in one_error(err)
    assert snapshot(tmp_path) == before


# --- 4. ragged rows: skipped with one warning, the same rule for --data-dir and --train-file ----------------------


def test_ragged_rows_of_a_glue_folder_are_skipped_with_their_line_numbers(tmp_path, tiny_glue_dir, caplog):
    from hfcompress.data import load_glue

    lines = lines_of(tiny_glue_dir)
    for number in (4, 8, 9, 10, 11, 12, 13):  # 1-based line numbers; line 1 is the header
        lines[number - 1] = lines[number - 1].replace(b"\t", b" ") if number % 2 else lines[number - 1] + b"\tx"
    folder = glue_copy(tmp_path, tiny_glue_dir, train=b"\n".join(lines))
    data = load_glue("sst2", data_dir=tmp_path / "glue")
    assert len(data["train"]) == 64 - 7
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"Skipped 7 malformed rows of {folder / 'train.tsv'} (not 2 tab-separated fields on lines "
                        "4, 8, 9, 10, 11 and 2 more)."]  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
@pytest.mark.parametrize("task", ["sst2", "classification"])
def test_ragged_rows_of_user_files_follow_the_same_rule(suffix, task, tmp_path, caplog):
    from hfcompress.pipeline import load_data
    from hfcompress.tasks import ClassificationTask, GlueTaskConfig

    sep = "," if suffix == ".csv" else "\t"
    quoted = '"a review, quoted,\nover two lines"' if suffix == ".csv" else "a review"
    rows = ["sentence", "label"], ["fine", "1"], [quoted, "0"], ["too", "many", "fields"], ["good", "1"], ["alone"]
    path = tmp_path / f"train{suffix}"
    path.write_text("\n".join(sep.join(row) for row in rows) + "\n", encoding="utf-8")
    dev = tmp_path / f"dev{suffix}"
    dev.write_text(f"sentence{sep}label\nok{sep}1\nbad{sep}0\n", encoding="utf-8")
    if task == "sst2":
        spec = GlueTaskConfig(task="sst2", train_file=str(path), validation_file=str(dev))
    else:
        spec = ClassificationTask(train_file=str(path), validation_file=str(dev), text_columns=("sentence",))
    splits = load_data(spec, need_train=True)
    assert len(splits["train"]) == 3
    first = 5 if suffix == ".csv" else 4  # the quoted field spans lines 3 and 4
    shown = "tab-separated " if suffix == ".tsv" else ""
    expected = f"Skipped 2 malformed rows of {path} (not 2 {shown}fields on lines {first}, {first + 2})."
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [expected]


# --- 5. --data-dir that is a file --------------------------------------------------------------------------------


def test_a_data_dir_that_is_a_file(tmp_path, tiny_teacher_dir, capsys):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nfine\t1\n")
    code, err = run(["evaluate", tiny_teacher_dir, "--task", "sst2", "--data-dir", tmp_path / "train.tsv"], capsys)
    assert code == 2
    assert f"GLUE data directory {tmp_path / 'train.tsv'} is a file, not a folder" in one_error(err)


# --- 6. models that ship their own code ---------------------------------------------------------------------------


def custom_code_model(tmp_path, tiny_teacher_dir, model_type: str):
    folder = shutil.copytree(tiny_teacher_dir, tmp_path / f"custom-{model_type}")
    config = json.loads((folder / "config.json").read_text())
    auto_map = {"AutoConfig": "modeling_custom.Config", "AutoModelForSequenceClassification": "modeling_custom.Model"}
    config.update(model_type=model_type, auto_map=auto_map)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_custom.py").write_text("raise SystemExit('the shipped code ran')\n")
    return folder


def test_shipped_code_needs_trust_remote_code(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys, no_training):
    model = custom_code_model(tmp_path, tiny_teacher_dir, "my-custom-bert")
    before = snapshot(tmp_path)
    code, err = run(["finetune", model, "--task", "sst2", "--data-dir", tiny_glue_dir, *FAST, "--output-dir",
                     tmp_path / "out"], capsys)  # fmt: skip
    assert code == 2
    line = one_error(err)
    assert f"'{model}' needs the Python code it ships (modeling_custom.py)" in line
    assert "pass --trust-remote-code to run it" in line
    assert snapshot(tmp_path) == before


def test_shipped_code_notices(tmp_path, tiny_teacher_dir, caplog):
    from hfcompress.models import check_remote_code

    unknown = custom_code_model(tmp_path, tiny_teacher_dir, "my-custom-bert")
    check_remote_code(str(unknown), trust_remote_code=True)
    known = custom_code_model(tmp_path, tiny_teacher_dir, "bert")
    check_remote_code(str(known), trust_remote_code=False)  # transformers' own BERT code loads it
    check_remote_code(str(known), trust_remote_code=False)  # said once per process
    assert [r.getMessage() for r in caplog.records] == [
        f"Note: --trust-remote-code is set, so the Python code shipped with '{unknown}' (modeling_custom.py) will "
        "run.",
        f"Note: '{known}' ships its own model code (modeling_custom.py), which is not run without "
        "--trust-remote-code; transformers' built-in bert code loads it instead.",
    ]


# --- 7. messages name the flags, not the Python parameters ------------------------------------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["prune", "--method", "wanda", "--calibration-samples", "0"], "--calibration-samples must be at least 1"),
        (["prune", "--method", "sparsegpt", "--dampening", "1.5"], "--dampening must be in [0, 1)"),
        (["quantize", "--method", "onnx-int8-static", "--calibration-samples", "0"],
         "--calibration-samples must be at least 1"),
        (["quantize", "--method", "onnx-int8-static", "--percentile", "50"], "--percentile must be between 90 and"),
        (["prune", "--start-step", "-1"], "--start-step must be 0 or more"),
        (["prune", "--start-step", "6", "--end-step", "3"], "--end-step 3 must come after --start-step 6"),
        (["prune", "--sparsity", "0.5", "--initial-sparsity", "0.7"], "--initial-sparsity must be between 0 and"),
        (["prune", "--update-frequency", "0"], "--update-frequency must be at least 1"),
        # Flags of one way of pruning given to another would be ignored; they are refused instead.
        (["prune", "--method", "wanda", "--schedule", "linear"],
         "--schedule sets gradual pruning's schedule; --method wanda prunes in one shot, so leave it out."),
        (["prune", "--structure", "vocab", "--update-frequency", "5"],
         "--update-frequency sets gradual pruning's schedule; --structure vocab prunes in one shot"),
        (["prune", "--structure", "depth", "--num-layers", "2", "--end-step", "4"],
         "--end-step sets gradual pruning's schedule; --structure depth prunes in one shot"),
        (["prune", "--sparsity", "0.5", "--calibration-samples", "8"],
         "--calibration-samples applies to one-shot pruning (--method magnitude, wanda, sparsegpt, or --structure"),
    ],
)  # fmt: skip
def test_messages_name_the_flags(argv, message, tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    command, *rest = argv
    code, err = run([command, tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, *rest,
                     "--output-dir", tmp_path / "out"], capsys)  # fmt: skip
    assert code == 2 and f"error: {message}" in one_error(err)
    assert not any(tmp_path.iterdir())


# --- 8. pickle weights ----------------------------------------------------------------------------------------


def test_pickle_weights_load_with_a_notice(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys, caplog):
    from safetensors.torch import load_file

    model = shutil.copytree(tiny_teacher_dir, tmp_path / "bin-only")
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    code, err = run(["evaluate", model, "--task", "sst2", "--data-dir", tiny_glue_dir, "--latency-runs", "0"], capsys)
    assert code == 0, err[-3000:]
    notes = [r.getMessage() for r in caplog.records if "pickle" in r.getMessage()]
    assert len(notes) == 1 and "pytorch_model.bin" in notes[0] and "torch.load(weights_only=True)" in notes[0]


# --- 9. honest summaries ----------------------------------------------------------------------------------------


def test_summary_and_card_show_only_what_ran(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    out = tmp_path / "out"
    code = main(["finetune", str(tiny_teacher_dir), "--task", "sst2", "--data-dir", str(tiny_glue_dir), *FAST,
                 "--output-dir", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "fine-tuned" in printed
    assert "nan" not in printed and "0.00 M" not in printed
    report = json.loads((out / "compression.json").read_text())
    settings = report["steps"][-1]["settings"]
    assert settings["steps_done"] == 2 and settings["epochs_done"] == 0.25  # 2 of the 8 steps of an epoch
    card = (out / "README.md").read_text()
    assert "steps_done=2, epochs_done=0.25" in card and "epochs=3" not in card  # asked, not done


def test_summary_rows_never_show_nan_or_zero_for_what_was_not_measured():
    from hfcompress.report import summary_rows

    report = {
        "task": "sst2",
        "task_info": {"kind": "glue"},
        "source": {"label": "base", "model": "m"},  # a fine-tune's base is not measured
        "result": {"metrics": {"accuracy": 0.9}, "score": 0.9, "parameters": 1_000_000, "size_bytes": 4_000_000,
                   "sparsity": {"global": 0.5}},
        "ratios": {},
    }  # fmt: skip
    rows = summary_rows(report)
    text = repr(rows)
    assert "nan" not in text and "0.00 M" not in text
    assert ("parameters", "-", "1.00 M", "") in rows and ("GLUE score", "-", "0.9000", "") in rows
    assert ("sparsity (pruned layers)", "-", "0.500", "") in rows  # the source's sparsity was never measured
    report["result"].update(score=float("nan"), parameters=0)
    labels = [row[0] for row in summary_rows(report)]
    assert "GLUE score" not in labels and "parameters" not in labels


# --- 10. a push that fails after training -----------------------------------------------------------------------


def test_a_failed_push_after_training_says_how_to_push(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys,
                                                       monkeypatch):  # fmt: skip
    import hfcompress.hub
    from hfcompress.errors import HfcompressError

    def unreachable(*args, **kwargs):
        raise HfcompressError("Could not reach the Hub at http://127.0.0.1:1 (ConnectError: refused); check the "
                              "network or HF_ENDPOINT and run the command again.")  # fmt: skip

    monkeypatch.setattr(hfcompress.hub, "check_token", lambda token=None: "alice")
    monkeypatch.setattr(hfcompress.hub, "push_folder", unreachable)
    out = tmp_path / "out"
    args = ["finetune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, *FAST, "--output-dir", out,
            "--push_to_hub", "--hub_model_id", "alice/tiny"]  # fmt: skip
    code, err = run(args, capsys)
    assert code == 1
    line = one_error(err)
    assert f"The model is saved at '{out}', but pushing it failed (Could not reach the Hub" in line
    assert line.endswith(f"push it with: hfcompress push {out} --repo-id alice/tiny")
    assert "command again" not in line and (out / "model.safetensors").is_file()
    code, err = run(args, capsys)  # what "run the same command again" would have met
    assert code == 2 and "already exists and is not empty" in one_error(err)


def test_a_bad_hub_model_id_is_refused_before_training(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys,
                                                       no_training):  # fmt: skip
    push = ["--push_to_hub", "--hub_model_id", "alice/bad--name"]
    code, err = run(["finetune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, *FAST, *push,
                     "--output-dir", tmp_path / "out"], capsys)  # fmt: skip
    assert code == 2 and "'alice/bad--name' is not a valid Hub repo id" in one_error(err)
    assert not any(tmp_path.iterdir())

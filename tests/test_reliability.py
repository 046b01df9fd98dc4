"""Runs that resume after a kill, stop on divergence, say where to resume on SIGTERM, and never record a token."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import THREADS, run_cli, tiny_classifier
from safetensors.torch import load_file

from hfcompress.cli.common import command_line

FLAGS = ["--task", "sst2", "--per-device-train-batch-size", "4", "--learning-rate", "1e-3", "--latency-runs", "0",
         "--save_strategy", "steps", "--save_steps", "5", "--report_to", "none"]  # fmt: skip


def start_cli(*args):
    # The same threads as run_cli: another count changes float reduction order, and so the trained weights.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}
    return subprocess.Popen([sys.executable, "-m", "hfcompress", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def wait_for(path, process, last_file="trainer_state.json", timeout=120):
    """Wait until a checkpoint's last file is written (callbacks write theirs after the Trainer's)."""
    deadline = time.monotonic() + timeout
    while not (path / last_file).is_file():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)


COMMANDS = {
    "prune": ["--sparsity", "0.8", "--end-step", "30", "--update-frequency", "5"],
    "distill": ["--student-layers", "2"],
}


@pytest.mark.parametrize("command", ["prune", "distill"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(command, tmp_path, tiny_teacher_dir, tiny_glue_dir):
    extra = ["--teacher", tiny_teacher_dir] if command == "prune" else []
    # Long enough that the kill lands mid-run however fast the machine; two checkpoints kept at a time.
    args = [command, tiny_teacher_dir, *extra, *COMMANDS[command], "--data-dir", tiny_glue_dir, "--max-steps", "120",
            *FLAGS, "--save_steps", "10", "--save_total_limit", "2"]  # fmt: skip
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = run_cli(*args, "--output-dir", whole)
    assert result.returncode == 0, result.stderr[-3000:]

    process = start_cli(*args, "--output-dir", killed)
    staging = tmp_path / ".killed.partial"  # where an unfinished run writes
    wait_for(staging / "checkpoint-20", process, "pruning_state.json" if command == "prune" else "trainer_state.json")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not killed.exists()  # nothing that looks finished
    result = run_cli(*args, "--output-dir", killed, "--resume_from_checkpoint", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not staging.exists()

    expected, resumed = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    report, baseline = (json.loads((d / "compression.json").read_text()) for d in (killed, whole))
    settings = report["steps"][-1]["settings"]
    step = settings["resumed_at_step"]
    assert 20 <= step < 120 and step % 10 == 0 and settings["resumed_from"] == str(killed / f"checkpoint-{step}")
    assert settings["steps_done"] == 120
    assert report["result"]["metrics"] == pytest.approx(baseline["result"]["metrics"], abs=1e-6)
    if command == "prune":
        assert settings["schedule_history"] == baseline["steps"][-1]["settings"]["schedule_history"]


def test_sigterm_and_a_second_run_into_the_same_folder(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    from hfcompress.cli.main import main

    out, staging = tmp_path / "out", tmp_path / ".out.partial"
    args = ["prune", str(tiny_teacher_dir), "--data-dir", str(tiny_glue_dir), *map(str, FLAGS)]
    args += ["--output-dir", str(out)]
    process = start_cli(*args, "--max-steps", "2000")
    wait_for(staging / "checkpoint-5", process)
    # A second run into the same folder is refused while the first one writes; nothing of the first is touched.
    assert main([*args, "--max-steps", "4", "--overwrite_output_dir"]) == 2
    assert f"is writing '{out}'" in capsys.readouterr().err
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    # One line; the progress bar may redraw after it as the process exits.
    line = next(line for line in err.splitlines() if "Stopped at step" in line)
    assert line.startswith("hfcompress prune: error: Stopped at step ")
    assert f"rerun with --resume_from_checkpoint {staging / 'checkpoint-'}" in line
    assert "Traceback" not in err and not out.exists() and (staging / "checkpoint-5").is_dir()
    # The unfinished run's folder is kept for resuming; a fresh start must say so.
    assert main([*args, "--max-steps", "4"]) == 2
    assert "resume it with --resume_from_checkpoint true, or pass --overwrite_output_dir" in capsys.readouterr().err


def test_overwrite_replaces_the_folder_as_a_whole(tmp_path, tiny_lm_dirs, capsys):
    from hfcompress.cli.main import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"stale weights of an older run")
    (out / "README.md").write_text("an older card")
    code = main(["quantize", str(tiny_lm_dirs["llama"]), "--method", "torchao-int8-weight", "--latency-runs", "0",
                 "--output-dir", str(out), "--overwrite_output_dir"])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-2000:]
    assert not (out / "README.md").exists()  # no task, no card: the old one is gone with the old folder
    assert (out / "model.safetensors").read_bytes() != b"stale weights of an older run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old copy left beside it


def test_a_diverging_run_is_an_error_not_a_result(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    from hfcompress.cli.main import main

    out = tmp_path / "out"
    code = main(["finetune", str(tiny_teacher_dir), "--task", "sst2", "--data-dir", str(tiny_glue_dir), "--max-steps",
                 "6", "--learning_rate", "1e6", "--per-device-train-batch-size", "8", "--latency-runs", "0",
                 "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err[-3000:]
    line = next(line for line in err.splitlines() if "Training diverged" in line)
    assert line.startswith("hfcompress finetune: error: Training diverged at step ")
    assert "NaN or infinite" in line and "no checkpoint was saved" in line
    assert not out.exists()  # nothing saved as a result


def test_evaluate_refuses_non_finite_weights(tmp_path, tokenizer, tiny_glue_dir, capsys):
    from hfcompress.cli.main import main

    model = tiny_classifier("bert")
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "nan")
    tokenizer.save_pretrained(tmp_path / "nan")
    code = main(["evaluate", str(tmp_path / "nan"), "--task", "sst2", "--data-dir", str(tiny_glue_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "has NaN or infinite weights (first: bert.encoder.layer.1.output.dense.weight)" in err


@pytest.mark.parametrize(
    "resume,message",
    [("true", "found no checkpoint-N folder"), ("{model}", "is not a Trainer checkpoint")],
)
def test_bad_resume_fails_fast(tmp_path, tiny_teacher_dir, tiny_glue_dir, resume, message, capsys):
    from hfcompress.cli.main import main

    out = tmp_path / "out"
    resume = resume.format(model=tiny_teacher_dir)
    code = main(["finetune", str(tiny_teacher_dir), "--task", "sst2", "--data-dir", str(tiny_glue_dir),
                 "--resume_from_checkpoint", resume, "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--hub_token", "hf_secret"],
        ["--hub-token=hf_secret"],
        ["--hub_tok", "hf_secret"],
        ["--hub-to=hf_secret"],
        ["--hub_t", "hf_secret"],
    ],
)
def test_a_token_never_reaches_the_recorded_command(argv):
    shown = command_line(["m", "--task", "sst2", *argv, "--output-dir", "out"], "prune", secrets=("hf_secret",))
    assert "hf_secret" not in shown and "<redacted>" in shown and shown.endswith("--output-dir out")
    assert command_line(["--hub_model_id", "me/x"], "push") == "hfcompress push --hub_model_id me/x"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--output-dir", "{model}", "--overwrite_output_dir"], "is or contains the input model"),
        (["--output-dir", "{parent}", "--overwrite_output_dir"], "is or contains the input model"),
        (["--output-dir", "{out}", "--learning_rate", "-1"], "--learning_rate must be 0 or more, got -1.0"),
        (["--output-dir", "{out}", "--per_device_train_batch_size", "0"], "per_device_train_batch_size must be at"),
    ],
)
def test_outputs_that_would_clobber_inputs_and_bad_hyperparameters(tmp_path, tokenizer, tiny_glue_dir, extra,
                                                                   message, capsys):  # fmt: skip
    from conftest import snapshot

    from hfcompress.cli.main import main

    model = tmp_path / "models" / "teacher"
    tiny_classifier("bert").save_pretrained(model)
    tokenizer.save_pretrained(model)
    before = snapshot(tmp_path)
    places = {"model": model, "parent": model.parent, "out": tmp_path / "out"}
    args = [a.format(**places) for a in extra]
    code = main(["finetune", str(model), "--task", "sst2", "--data-dir", str(tiny_glue_dir), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err[-2000:]
    assert snapshot(tmp_path) == before


def test_a_head_trained_for_another_task_is_not_a_trained_teacher(tmp_path, tokenizer, capsys):
    from conftest import SHARED_GLUE

    from hfcompress.cli.main import main
    from hfcompress.models import load_for_task
    from hfcompress.tasks import GlueTaskConfig

    sst2 = tmp_path / "sst2-model"
    model = tiny_classifier("bert")
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model.save_pretrained(sst2)
    tokenizer.save_pretrained(sst2)
    _, fresh = load_for_task(sst2, GlueTaskConfig(task="rte", data_dir=SHARED_GLUE))
    assert fresh  # two labels, but SST-2's: distill fine-tunes it for RTE first, prune --teacher refuses it
    _, fresh = load_for_task(sst2, GlueTaskConfig(task="sst2", data_dir=SHARED_GLUE))
    assert not fresh

    code = main(["evaluate", str(sst2), "--task", "rte", "--data-dir", str(SHARED_GLUE), "--latency-runs", "0"])
    err = capsys.readouterr().err
    assert code == 0
    assert "was trained with the labels negative, positive, not rte's (entailment, not_entailment)" in err


def _bad_inputs(tmp_path, model):
    import shutil

    truncated = tmp_path / "truncated"
    shutil.copytree(model, truncated)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (tmp_path / "broken.yaml").write_text("task: [sst2\n")
    (tmp_path / "tagged.yaml").write_text('model: !!python/object/apply:os.system ["echo hi"]\n')
    return truncated


@pytest.mark.parametrize(
    "argv,message",
    [
        (["evaluate", "{truncated}"], "model.safetensors' is damaged or incomplete"),
        (["evaluate", "{model}", "--config", "{tmp}/broken.yaml"], "broken.yaml' is not valid YAML for safe loading"),
        (["evaluate", "{model}", "--config", "{tmp}/tagged.yaml"], "could not determine a constructor for the tag"),
        (["evaluate", "{model}", "--max_seq_length", "100000"], "--max-seq-length 100000 is more than the"),
        (["evaluate", "{model}", "--output-file", "{tmp}/missing/x.json"], "missing' is not a writable folder"),
        (["prune", "{model}", "--modules", "(", "--output-dir", "{tmp}/o"], "--modules '(' is not a valid regular"),
    ],
)
def test_bad_inputs_get_one_sentence(tmp_path, tiny_teacher_dir, tiny_glue_dir, argv, message, capsys):
    from conftest import snapshot

    from hfcompress.cli.main import main

    truncated = _bad_inputs(tmp_path, tiny_teacher_dir)
    before = snapshot(tmp_path)
    places = {"model": tiny_teacher_dir, "truncated": truncated, "tmp": tmp_path}
    code = main([a.format(**places) for a in argv] + ["--task", "sst2", "--data-dir", str(tiny_glue_dir)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err[-2000:]
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert snapshot(tmp_path) == before

"""--teacher-dtype: a half-precision teacher teaches a float32 student with the float32 teacher's losses; the dtype
and device it ran in are in the trainer, compression.json and the model card; bad values are one sentence."""

import json

import pytest
import torch
from conftest import lm_rows, pad_lm_batch, run_cli, snapshot, tiny_classifier, tiny_lm
from test_distillation_trainer import dataset, make_args
from transformers import DataCollatorWithPadding

from hfcompress.cli.main import main
from hfcompress.distillation import DistillationArguments, DistillationTrainer, build_student_from_teacher
from hfcompress.distillation.teacher_cache import FINGERPRINT_FILE
from hfcompress.distillation.teacher_placement import teacher_dtype
from hfcompress.errors import UsageError

CLASSIFIER_LOSSES = dict(distill_weight=1.0, hard_label_weight=0.5, hidden_weight=1.0, cosine_weight=0.5,
                         attention_weight=1.0)  # fmt: skip


def classifier_trainer(tmp_path, tokenizer, dtype: str, **kwargs):
    teacher = tiny_classifier("bert", layers=4, seed=0)
    student = tiny_classifier("bert", layers=2, hidden=16, seed=1)  # narrower: the hidden losses use a projection
    args = make_args(tmp_path, teacher_dtype=dtype, temperature=2.0, **kwargs)
    collator = DataCollatorWithPadding(tokenizer)
    return DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset(tokenizer),
                               processing_class=tokenizer, data_collator=collator)  # fmt: skip


def lm_trainer(tmp_path, dtype: str, **kwargs):
    teacher = tiny_lm("llama", vocab_size=97, seed=0)
    student = build_student_from_teacher(tiny_lm("llama", vocab_size=97, seed=1), [0, 3])
    args = DistillationArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, seed=0,
                                 teacher_dtype=dtype, temperature=2.0, **kwargs)  # fmt: skip
    return DistillationTrainer(model=student, teacher=teacher, args=args, layer_map={0: 0, 1: 3},
                               train_dataset=lm_rows(), data_collator=pad_lm_batch)  # fmt: skip


def loss_and_grads(trainer, batch) -> tuple[torch.Tensor, dict]:
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}


CASES = {
    "bert": (classifier_trainer, CLASSIFIER_LOSSES),
    "llama": (lm_trainer, dict(distill_weight=1.0, hard_label_weight=0.5, hidden_weight=1.0, cosine_weight=0.5)),
    "llama-jsd": (lm_trainer, dict(distill_weight=1.0, divergence="jsd", hidden_weight=1.0)),
    "llama-chunked": (lm_trainer, dict(distill_weight=1.0, hard_label_weight=0.5, loss_chunk_tokens=5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bfloat16_teacher_gives_the_float32_teachers_loss(tmp_path, tokenizer, case):
    make, losses = CASES[case]
    extra = (tokenizer,) if make is classifier_trainer else ()
    full = make(tmp_path / "fp32", *extra, "float32", **losses)
    half = make(tmp_path / "bf16", *extra, "bfloat16", **losses)
    if make is classifier_trainer:
        batch = DataCollatorWithPadding(tokenizer)(list(dataset(tokenizer)))  # label -> labels
    else:
        batch = pad_lm_batch(list(lm_rows()))

    assert {p.dtype for p in full.teacher.parameters()} == {torch.float32}
    assert {p.dtype for p in half.teacher.parameters()} == {torch.bfloat16}
    assert half.teacher_placement == {"device": "cpu", "dtype": "bfloat16"}
    assert full.teacher_placement == {"device": "cpu", "dtype": "float32"}
    full_loss, full_grads = loss_and_grads(full, batch)
    half_loss, half_grads = loss_and_grads(half, batch)
    assert half_loss.dtype == torch.float32 and torch.isfinite(half_loss)
    torch.testing.assert_close(half_loss, full_loss, rtol=1e-2, atol=1e-3)  # bfloat16 keeps ~3 significant digits
    assert half_grads.keys() == full_grads.keys() and half_grads
    for name, grad in half_grads.items():
        assert grad.dtype == torch.float32, name
    # The student is untouched by the cast: float32 parameters, trained by the half-precision teacher.
    assert {p.dtype for p in half.model.parameters()} == {torch.float32}


def test_auto_keeps_a_cpu_teacher_as_loaded_and_float16_runs_on_cpu(tmp_path):
    # torch 2.13 runs float16 matmuls on CPU, so an explicit float16 is honoured there too (slow, but correct).
    losses = dict(distill_weight=1.0, hidden_weight=1.0)
    auto = lm_trainer(tmp_path / "auto", "auto", **losses)
    assert auto.teacher_placement == {"device": "cpu", "dtype": "float32"}
    fp16 = lm_trainer(tmp_path / "fp16", "float16", **losses)
    assert fp16.teacher_placement == {"device": "cpu", "dtype": "float16"}
    batch = pad_lm_batch(list(lm_rows()))
    torch.testing.assert_close(loss_and_grads(fp16, batch)[0], loss_and_grads(auto, batch)[0], rtol=1e-3, atol=1e-4)
    assert teacher_dtype(auto.args, "cpu") is None and teacher_dtype(fp16.args, "cpu") == torch.float16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(teacher_dtype="int8"), "--teacher-dtype must be one of auto, float32, bfloat16, float16, not 'int8'."),
        (dict(teacher_dtype="fp16"), "not 'fp16'."),
        (dict(teacher_dtype="bfloat16", fsdp=True), "--teacher-dtype bfloat16 cannot be used with --fsdp"),
    ],
)
def test_impossible_teacher_dtype_is_one_sentence(tmp_path, kwargs, message):
    with pytest.raises(UsageError) as err:
        make_args(tmp_path, **kwargs)
    assert message in str(err.value) and str(err.value).count(". ") == 0


def test_sharded_teacher_takes_the_fsdp_policy(tmp_path):
    args = make_args(tmp_path, teacher_dtype="auto")
    assert teacher_dtype(args, "cpu", sharded=True) is None
    args.teacher_dtype = "float16"
    with pytest.raises(UsageError, match="under FSDP, where the FSDP mixed-precision policy"):
        teacher_dtype(args, "cpu", sharded=True)


def test_teacher_cache_is_built_in_the_teachers_dtype_and_refused_for_another(tmp_path, tokenizer):
    cache = tmp_path / "cache"
    built = classifier_trainer(tmp_path / "a", tokenizer, "float32", distill_weight=1.0, teacher_cache=str(cache))
    assert built.teacher_cache.summary()["teacher_dtype"] == "float32"
    with pytest.raises(UsageError) as err:
        classifier_trainer(tmp_path / "b", tokenizer, "bfloat16", distill_weight=1.0, teacher_cache=str(cache))
    message = str(err.value)
    assert "is stale: the teacher's dtype (float32 then, bfloat16 now) changed since it was built" in message
    assert "weights, dtype or config" not in message  # the cast is named, not every weight it changed

    rebuilt = classifier_trainer(tmp_path / "c", tokenizer, "bfloat16", distill_weight=1.0, teacher_cache=str(cache),
                                 teacher_cache_rebuild=True)  # fmt: skip
    fingerprint = json.loads((cache / FINGERPRINT_FILE).read_text())
    assert fingerprint["parts"]["teacher_dtype"] == "bfloat16" and rebuilt.teacher_cache.status == "built"
    reused = classifier_trainer(tmp_path / "d", tokenizer, "bfloat16", distill_weight=1.0, teacher_cache=str(cache))
    assert reused.teacher_cache.status == "reused"


# -- the command line ---------------------------------------------------------------------------------------------

CLI_FLAGS = ["--task", "sst2", "--student-layers", "2", "--max-steps", "2", "--per-device-train-batch-size", "8",
             "--latency-runs", "0", "--seed", "0"]  # fmt: skip


def distill(*args) -> int:
    """The CLI in this process (as test_teacher_cache.py runs it): the same parsing, exit codes and messages."""
    return main([str(a) for a in ["distill", *args]])


def check_report(out, teacher_dir, dtype: str) -> None:
    report = json.loads((out / "compression.json").read_text())
    assert report["steps"][-1]["settings"]["teacher_placement"] == {"device": "cpu", "dtype": dtype}
    # The teacher's own numbers are the teacher as loaded (float32), whatever dtype it taught in.
    assert report["source"]["size_bytes"] == (teacher_dir / "model.safetensors").stat().st_size
    assert f"teacher in {dtype} on cpu" in (out / "README.md").read_text()
    saved = json.loads((out / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "float32"  # the student keeps its dtype


def test_cli_records_a_bfloat16_teacher(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "student"
    result = run_cli("distill", tiny_teacher_dir, "--data-dir", tiny_glue_dir, *CLI_FLAGS, "--teacher-dtype",
                     "bfloat16", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    check_report(out, tiny_teacher_dir, "bfloat16")


def test_cli_default_keeps_a_cpu_teacher_in_float32(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "student"
    assert distill(tiny_teacher_dir, "--data-dir", tiny_glue_dir, *CLI_FLAGS, "--output-dir", out) == 0
    check_report(out, tiny_teacher_dir, "float32")


def test_cli_refuses_a_bad_teacher_dtype_and_writes_nothing(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    before = snapshot(tmp_path)
    out = tmp_path / "student"
    code = distill(tiny_teacher_dir, "--data-dir", tiny_glue_dir, *CLI_FLAGS, "--teacher-dtype", "half",
                   "--output-dir", out)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert [line for line in err.splitlines() if "error" in line.lower()] == [
        "hfcompress distill: error: --teacher-dtype must be one of auto, float32, bfloat16, float16, not 'half'."
    ], err[-2000:]
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before and not out.exists()

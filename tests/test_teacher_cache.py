"""The teacher cache: built on a miss, reused on a hit (the teacher never runs), refused when stale; cached
losses equal the live teacher's."""

import json
import math
import runpy
import sys

import pytest
import torch
from conftest import ROOT, lm_rows, pad_lm_batch, run_cli, snapshot, tiny_classifier, tiny_lm
from safetensors.torch import load_file
from test_distillation_trainer import dataset, make_args
from transformers import DataCollatorWithPadding

from hfcompress.cli.main import main
from hfcompress.distillation import DistillationArguments, DistillationTrainer, build_student_from_teacher, losses
from hfcompress.distillation.teacher_cache import FINGERPRINT_FILE, OUTPUTS_FILE
from hfcompress.errors import UsageError
from hfcompress.outputs import LOCK

CLI_FLAGS = ["--task", "sst2", "--student-layers", "0,3", "--max-steps", "3", "--per-device-train-batch-size", "8",
             "--learning-rate", "1e-2", "--latency-runs", "0", "--seed", "0"]  # fmt: skip


def forward_counter(model) -> list:
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(1))
    return calls


def classifier_trainer(tmp_path, tokenizer, teacher, cache=None, **kwargs):
    student = build_student_from_teacher(tiny_classifier("bert", layers=4, seed=0), [0, 3])
    args = make_args(tmp_path, teacher_cache=cache, optim="sgd", learning_rate=0.5, max_steps=2,
                     per_device_train_batch_size=4, per_device_eval_batch_size=3, temperature=2.0,
                     **kwargs)  # fmt: skip
    collator = DataCollatorWithPadding(tokenizer)
    return DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset(tokenizer),
                               processing_class=tokenizer, data_collator=collator)  # fmt: skip


def params(trainer) -> dict:
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters()}


def test_miss_builds_then_hit_reuses_without_running_the_teacher(tmp_path, tokenizer):
    teacher = tiny_classifier("bert", layers=4, seed=0)
    calls = forward_counter(teacher)
    cache = tmp_path / "cache"
    built = classifier_trainer(tmp_path, tokenizer, teacher, str(cache))
    assert built.teacher_cache.status == "built"
    assert len(calls) == math.ceil(8 / 3)  # one pass over the 8 training rows, in eval batches of 3
    assert sorted(p.name for p in cache.iterdir()) == [FINGERPRINT_FILE, OUTPUTS_FILE]
    tensors = load_file(cache / OUTPUTS_FILE)
    assert tensors["logits"].shape == (8, 2) and tensors["keys"].shape == (8, 16)
    with torch.no_grad():
        live = teacher(**DataCollatorWithPadding(tokenizer)(list(dataset(tokenizer).remove_columns("label"))))
    torch.testing.assert_close(tensors["logits"], live.logits)

    calls.clear()
    before = snapshot(cache)
    reused = classifier_trainer(tmp_path, tokenizer, teacher, str(cache))
    reused.train()
    assert reused.teacher_cache.status == "reused" and snapshot(cache) == before
    assert not calls  # neither opening the cache nor training ran the teacher


def test_classifier_training_with_the_cache_equals_the_live_teacher(tmp_path, tokenizer):
    teacher = tiny_classifier("bert", layers=4, seed=0)
    live = classifier_trainer(tmp_path / "live", tokenizer, teacher)
    live.train()
    cache = classifier_trainer(tmp_path / "build", tokenizer, teacher, str(tmp_path / "cache")).teacher_cache
    # No teacher at all: every training batch must come from the cache.
    student = build_student_from_teacher(tiny_classifier("bert", layers=4, seed=0), [0, 3])
    cached = DistillationTrainer(
        model=student, teacher=None, teacher_cache=cache, train_dataset=dataset(tokenizer), processing_class=tokenizer,
        args=make_args(tmp_path / "cached", optim="sgd", learning_rate=0.5, max_steps=2, per_device_train_batch_size=4,
                       temperature=2.0),
    )  # fmt: skip
    cached.train()
    start = build_student_from_teacher(tiny_classifier("bert", layers=4, seed=0), [0, 3])
    moved = 0
    for name, value in params(live).items():
        torch.testing.assert_close(params(cached)[name], value, atol=1e-6, rtol=1e-5)
        moved += not torch.allclose(value, dict(start.named_parameters())[name])
    assert moved > 10
    assert live.state.log_history[-1]["train_loss"] == pytest.approx(cached.state.log_history[-1]["train_loss"])


def test_stale_cache_is_refused_and_rebuilt_on_request(tmp_path, tokenizer):
    cache = tmp_path / "cache"
    classifier_trainer(tmp_path, tokenizer, tiny_classifier("bert", layers=4, seed=0), str(cache))
    before = snapshot(cache)
    other = tiny_classifier("bert", layers=4, seed=1)
    with pytest.raises(
        UsageError,
        match=r"is stale: the teacher \(weights, dtype or config\) changed since it was "
        r"built; rebuild it with --teacher-cache-rebuild or delete the folder\.",
    ):
        classifier_trainer(tmp_path, tokenizer, other, str(cache))
    assert snapshot(cache) == before
    rebuilt = classifier_trainer(tmp_path, tokenizer, other, str(cache), teacher_cache_rebuild=True)
    assert rebuilt.teacher_cache.status == "built" and snapshot(cache) != before


def test_top_k_loss_over_the_whole_vocabulary_is_the_forward_kl():
    generator = torch.Generator().manual_seed(0)
    student, teacher = (torch.randn(12, 50, generator=generator) * 3 for _ in range(2))
    log_probs, ids = torch.log_softmax(teacher, dim=-1).topk(50, dim=-1)
    for temperature in (1.0, 2.0):
        full = losses.forward_kl(student, teacher, temperature)
        torch.testing.assert_close(losses.top_k_forward_kl(student, log_probs, ids, temperature), full)
    # k < vocab: the teacher's k tokens renormalised, the student's full softmax read at them.
    log_probs, ids = log_probs[:, :5], ids[:, :5]
    t = torch.softmax(log_probs / 2.0, dim=-1)
    s = torch.log_softmax(student / 2.0, dim=-1).gather(-1, ids)
    expected = (t * (t.log() - s)).sum(-1) * 4.0
    torch.testing.assert_close(losses.top_k_forward_kl(student, log_probs, ids, 2.0), expected)


def lm_trainer(tmp_path, cache=None, top_k=64, chunk=0, **kwargs):
    teacher = tiny_lm("llama", vocab_size=97, seed=0)
    student = build_student_from_teacher(tiny_lm("llama", vocab_size=97, seed=1), [0, 3])
    args = DistillationArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=0.5, optim="sgd",
        lr_scheduler_type="constant", max_grad_norm=0.0, report_to="none", seed=0, use_cpu=True, disable_tqdm=True,
        temperature=2.0, teacher_cache=cache, teacher_cache_top_k=top_k, loss_chunk_tokens=chunk, **kwargs,
    )  # fmt: skip
    return DistillationTrainer(model=student, teacher=teacher, args=args, layer_map={0: 0, 1: 3},
                               train_dataset=lm_rows(), data_collator=pad_lm_batch)  # fmt: skip


def lm_train(trainer) -> tuple[float, dict]:
    calls = forward_counter(trainer.teacher)
    loss = trainer.train().training_loss
    assert trainer.teacher_cache is None or not calls  # with a cache, no training batch ran the teacher
    return loss, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_causal_lm_cache_with_the_whole_vocabulary_equals_the_live_teacher(tmp_path):
    # Rows of different lengths, right-padded: cached positions must line up with the batch's real tokens.
    cache = tmp_path / "cache"
    loss, live = lm_train(lm_trainer(tmp_path / "live"))
    cached_loss, cached = lm_train(lm_trainer(tmp_path / "cached", str(cache), top_k=1000))
    assert cached_loss == pytest.approx(loss, rel=1e-5)
    for name, value in live.items():
        torch.testing.assert_close(cached[name], value, atol=1e-6, rtol=1e-5)
    tensors = load_file(cache / OUTPUTS_FILE)
    assert tensors["log_probs"].shape == (8, 16, 97) and tensors["ids"].dtype == torch.int32  # k capped at 97
    assert json.loads((cache / FINGERPRINT_FILE).read_text())["parts"]["outputs"] == "top-97 log-probs"

    # --loss-chunk-tokens: the same loss and gradients from cached log-probabilities, 5 tokens at a time.
    batch = pad_lm_batch(list(lm_rows()))
    results = []
    for trainer in (
        lm_trainer(tmp_path / "live5", chunk=5),
        lm_trainer(tmp_path / "cached5", str(cache), top_k=97, chunk=5),
    ):
        trainer.model.train()
        value = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(72))
        value.backward()
        results.append((value.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, atol=1e-6, rtol=1e-5)


def test_causal_lm_cache_keeps_top_k(tmp_path):
    small = tmp_path / "small"
    trainer = lm_trainer(tmp_path, str(small), top_k=4)
    tensors = load_file(small / OUTPUTS_FILE)
    assert tensors["log_probs"].shape == (8, 16, 4) and tensors["ids"].shape == (8, 16, 4)
    row = pad_lm_batch([lm_rows()[1]])
    with torch.no_grad():
        expected = torch.log_softmax(trainer.teacher(**row).logits[0], dim=-1).topk(4, dim=-1)
    torch.testing.assert_close(tensors["log_probs"][1, :12], expected.values)
    assert torch.equal(tensors["ids"][1, :12].long(), expected.indices)
    assert (tensors["log_probs"][1, 12:] == 0).all()  # the row has 12 tokens; the rest is padding
    with pytest.raises(UsageError, match=r"the kind of cached outputs \(top-4 log-probs then, top-8 log-probs now\)"):
        lm_trainer(tmp_path, str(small), top_k=8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(teacher_cache="c", hidden_weight=1.0), "but hidden_weight needs the live teacher; set it to 0"),
        (dict(teacher_cache="c", attention_weight=1.0, cosine_weight=1.0), "attention_weight and cosine_weight need"),
        (dict(teacher_cache="c", teacher_cache_top_k=0), "--teacher-cache-top-k must be at least 1, got 0."),
        (dict(teacher_cache_rebuild=True), "--teacher-cache-rebuild needs --teacher-cache FOLDER."),
    ],
)
def test_impossible_cache_settings(tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        DistillationArguments(output_dir=str(tmp_path), report_to="none", **kwargs)


def test_causal_lm_cache_serves_the_forward_kl_only(tmp_path):
    with pytest.raises(UsageError, match="supports --divergence forward_kl only, not reverse_kl."):
        lm_trainer(tmp_path, str(tmp_path / "cache"), divergence="reverse_kl")
    assert not (tmp_path / "cache").exists()


# -- the command line ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory, tiny_teacher_dir, tiny_glue_dir):
    """`hfcompress distill --teacher-cache` run once for real: it builds the cache (a miss)."""
    root = tmp_path_factory.mktemp("cli-cache")
    cache, out = root / "cache", root / "built"
    result = run_cli("distill", tiny_teacher_dir, "--data-dir", tiny_glue_dir, *CLI_FLAGS, "--teacher-cache", cache,
                     "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return cache, out, result


def distill(tmp_path, teacher, glue, out, *extra) -> int:
    return main([str(a) for a in ["distill", teacher, "--data-dir", glue, *CLI_FLAGS, *extra, "--output-dir", out]])


def test_cli_builds_reuses_and_trains_as_without_cache(cli_cache, tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    cache, built_out, result = cli_cache
    assert "Caching the teacher's outputs on 64 training rows" in result.stdout
    fingerprint = json.loads((cache / FINGERPRINT_FILE).read_text())
    assert fingerprint["parts"]["max_length"] == 128 and fingerprint["info"]["rows"] == 64
    report = json.loads((built_out / "compression.json").read_text())
    assert report["steps"][-1]["settings"]["teacher_cache"]["status"] == "built"
    assert report["source"]["label"] == "teacher" and 0.0 <= report["source"]["metrics"]["accuracy"] <= 1.0

    before = snapshot(cache)
    assert distill(tmp_path, tiny_teacher_dir, tiny_glue_dir, tmp_path / "hit", "--teacher-cache", cache) == 0
    assert "Reusing the teacher's outputs cached in" in capsys.readouterr().out
    assert snapshot(cache) == before
    hit = json.loads((tmp_path / "hit" / "compression.json").read_text())
    assert hit["steps"][-1]["settings"]["teacher_cache"]["status"] == "reused"
    assert hit["source"]["metrics"] == report["source"]["metrics"]  # the teacher's row is measured as before

    assert distill(tmp_path, tiny_teacher_dir, tiny_glue_dir, tmp_path / "live") == 0
    live = load_file(tmp_path / "live" / "model.safetensors")
    assert (
        "teacher_cache"
        not in json.loads((tmp_path / "live" / "compression.json").read_text())["steps"][-1]["settings"]
    )
    start = build_student_from_teacher(tiny_classifier("bert", layers=4, seed=0), [0, 3]).state_dict()
    for weights in (load_file(built_out / "model.safetensors"), load_file(tmp_path / "hit" / "model.safetensors")):
        assert weights.keys() == live.keys()
        for name, value in live.items():
            torch.testing.assert_close(weights[name], value, atol=1e-6, rtol=1e-5)
    assert any(not torch.equal(live[name], start[name]) for name in live if name in start)  # training moved it


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-seq-length", "8"], "the max length (128 then, 8 now), the tokenized training data changed"),
        (["--max-train-samples", "32"], "is stale: the tokenized training data changed since it was built"),
        (["OTHER_TEACHER"], "is stale: the teacher (weights, dtype or config) changed since it was built"),
        (["--teacher-dtype", "bfloat16"], "is stale: the teacher's dtype (float32 then, bfloat16 now) changed since"),
    ],
)
def test_cli_refuses_a_stale_cache(cli_cache, tmp_path, tiny_teacher_dir, tiny_glue_dir, tokenizer, capsys, extra,
                                   message):  # fmt: skip
    cache = cli_cache[0]
    teacher = tiny_teacher_dir
    if extra == ["OTHER_TEACHER"]:
        teacher, extra = tmp_path / "other-teacher", []
        tiny_classifier("bert", seed=1).save_pretrained(teacher)
        tokenizer.save_pretrained(teacher)
    before, out = snapshot(cache), tmp_path / "out"
    assert distill(tmp_path, teacher, tiny_glue_dir, out, "--teacher-cache", cache, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "--teacher-cache-rebuild or delete the folder." in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("hfcompress distill: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert snapshot(cache) == before and not out.exists()
    staging = tmp_path / ".out.partial"  # locked at the start; removed at exit since nothing was written
    assert not staging.exists() or {p.name for p in staging.iterdir()} == {LOCK}


def test_benchmark_script_runs(tmp_path, monkeypatch):
    output = tmp_path / "bench.json"
    script = ROOT / "scripts" / "bench_teacher_cache.py"
    argv = [script, "--rounds", "2", "--steps", "2", "--warmup-steps", "1", "--train-samples", "16", "--batch-size",
            "8", "--output-file", output]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [str(a) for a in argv])
    with pytest.raises(SystemExit) as exited:  # in this process: the interpreter's start-up is not what is tested
        runpy.run_path(str(script), run_name="__main__")
    assert exited.value.code == 0
    summary = json.loads(output.read_text())
    for mode in ("live", "cached"):
        assert len(summary[mode]["ms_per_step"]) == 2 and summary[mode]["median_ms"] > 0
    assert summary["ratio_cached_to_live"] == pytest.approx(
        summary["cached"]["median_ms"] / summary["live"]["median_ms"], rel=1e-3
    )
    assert summary["same_first_loss"]

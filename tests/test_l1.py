"""`--l1-weight`: L1 sparsity regularization on the prunable weights (issue 15).

The penalty as a pure function (value and gradient), which weights it covers, its scaling under gradient
accumulation, and real `finetune`, `distill` and `prune` runs that train with it and log it.
"""

import json

import pytest
import torch
from conftest import pad_lm_batch, run_cli, tiny_classifier, tiny_lm
from transformers import AutoModelForSequenceClassification, TrainingArguments

from hfcompress.cli.main import main
from hfcompress.regularization import L1Trainer, l1_penalty, prunable_weights

FLAGS = ["--task", "sst2", "--per-device-train-batch-size", "8", "--learning-rate", "1e-3", "--latency-runs", "0",
         "--max-steps", "4", "--logging-steps", "2", "--save-strategy", "steps", "--save-steps", "4"]  # fmt: skip


# --- the L1 term: value and gradient ----------------------------------------------------------------------------


def test_l1_term_value_and_gradient():
    a = torch.tensor([[1.5, -2.0], [0.0, 0.25]], requires_grad=True)
    b = torch.tensor([-3.0, 0.5, -0.125], requires_grad=True)
    penalty = l1_penalty([a, b])
    assert penalty.dtype == torch.float32 and penalty.shape == ()
    assert penalty.item() == pytest.approx(1.5 + 2.0 + 0.0 + 0.25 + 3.0 + 0.5 + 0.125)
    penalty.backward()
    # d|w|/dw = sign(w); at w = 0 the (sub)gradient taken is 0.
    assert torch.equal(a.grad, torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    assert torch.equal(b.grad, torch.tensor([-1.0, 1.0, -1.0]))
    assert l1_penalty([]).item() == 0.0
    half = torch.tensor([-1.0, 2.0], dtype=torch.bfloat16)
    assert l1_penalty([half]).dtype == torch.float32 and l1_penalty([half]).item() == 3.0  # summed in float32


def test_only_prunable_weights_are_penalised():
    model = tiny_classifier("bert")
    weights = {id(w) for w in prunable_weights(model)}
    names = {name for name, p in model.named_parameters() if id(p) in weights}
    assert len(names) == 4 * 6  # query, key, value, attention output, intermediate, output in each of 4 blocks
    assert all(name.startswith("bert.encoder.layer.") and name.endswith(".weight") for name in names)
    assert not any("LayerNorm" in name or "embeddings" in name for name in names)
    assert "classifier.weight" not in names and "bert.pooler.dense.weight" not in names

    gpt2 = tiny_lm("gpt2")  # Conv1D projections count too; embeddings and the tied lm_head do not
    names = {name for name, p in gpt2.named_parameters() if id(p) in {id(w) for w in prunable_weights(gpt2)}}
    assert names == {f"transformer.h.{i}.{m}.weight" for i in range(4)
                     for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}  # fmt: skip


# --- in the Trainer: training loss only, once per optimizer step -------------------------------------------------


def _grads(model, batches, weight: float, ga: int, num_items, folder) -> tuple[torch.Tensor, torch.Tensor]:
    """The accumulated gradient of one prunable weight after `ga` micro-batches, and that weight."""
    args = TrainingArguments(output_dir=str(folder), gradient_accumulation_steps=ga, report_to="none", use_cpu=True)
    args.l1_weight = weight
    trainer = L1Trainer(model=model, args=args)
    trainer.current_gradient_accumulation_steps = ga  # set by the training loop
    model.zero_grad()
    for batch in batches:
        trainer.training_step(model, dict(batch), num_items_in_batch=num_items)
    first = prunable_weights(model)[0]
    return first.grad.clone(), first.detach()


@pytest.mark.parametrize("kind", ["classifier", "causal-lm"])
def test_penalty_gradient_is_added_once_per_optimizer_step(kind, tmp_path):
    """Classifier losses are per-batch means that the Trainer divides by the accumulation steps; causal-LM losses are
    divided by the whole accumulated batch's token count (num_items_in_batch): either way, 2 accumulated
    micro-batches add l1_weight * sign(w) to the gradient exactly once."""
    if kind == "classifier":
        model, num_items = tiny_classifier("bert").train(), None
        batches = [{"input_ids": torch.randint(1, 1000, (2, 8), generator=torch.Generator().manual_seed(i)),
                    "labels": torch.tensor([0, 1])} for i in range(2)]  # fmt: skip
    else:
        model = tiny_lm("llama").train()
        rows = [{"input_ids": list(range(5 + i, 15 + i))} for i in range(4)]
        batches = [pad_lm_batch(rows[:2]), pad_lm_batch(rows[2:])]
        num_items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    plain, w = _grads(model, batches, 0.0, 2, num_items, tmp_path)
    regularized, _ = _grads(model, batches, 0.5, 2, num_items, tmp_path)
    assert torch.allclose(regularized - plain, 0.5 * torch.sign(w), atol=1e-5)


def test_penalty_is_left_out_of_the_evaluation_loss(tmp_path):
    model = tiny_classifier("bert")
    batch = {"input_ids": torch.randint(1, 1000, (2, 8)), "labels": torch.tensor([0, 1])}
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    args.l1_weight = 0.5
    trainer = L1Trainer(model=model, args=args)
    with torch.no_grad():
        plain = model(**batch).loss
        assert trainer.compute_loss(model.eval(), dict(batch)) == pytest.approx(plain.item())
        trained = trainer.compute_loss(model.train(), dict(batch))
    assert trained.item() == pytest.approx(plain.item() + 0.5 * l1_penalty(prunable_weights(model)).item(), rel=1e-5)


# --- real runs ---------------------------------------------------------------------------------------------------


def _log_history(out) -> list[dict]:
    return json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]


def _prunable_l1(out) -> tuple[float, float]:
    """sum |w| over the saved model's prunable weights, and that of the smallest half (what 50% magnitude
    pruning cuts)."""
    weights = prunable_weights(AutoModelForSequenceClassification.from_pretrained(out))
    flat = torch.cat([w.detach().abs().flatten() for w in weights]).sort().values
    return flat.sum().item(), flat[: flat.numel() // 2].sum().item()


def test_finetune_with_l1_weight_shrinks_the_prunable_weights(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    outs = {}
    for weight in ("0", "0.01"):
        outs[weight] = tmp_path / f"l1-{weight}"
        result = run_cli("finetune", tiny_teacher_dir, "--data-dir", tiny_glue_dir, "--l1-weight", weight,
                         "--seed", "7", "--output-dir", outs[weight], *FLAGS)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    plain, regularized = _prunable_l1(outs["0"]), _prunable_l1(outs["0.01"])
    assert regularized[0] < plain[0] and regularized[1] < plain[1]

    logs = [entry for entry in _log_history(outs["0.01"]) if "loss" in entry]
    assert [entry["step"] for entry in logs] == [2, 4]
    assert all(entry["l1_penalty"] > 0 for entry in logs)
    assert logs[-1]["l1_penalty"] < logs[0]["l1_penalty"]  # the sum shrinks while training
    assert logs[0]["loss"] > 0.01 * logs[0]["l1_penalty"]  # the logged loss includes the weighted term
    assert not any("l1_penalty" in entry for entry in _log_history(outs["0"]))
    report = json.loads((outs["0.01"] / "compression.json").read_text())
    assert report["steps"][-1]["settings"]["l1_weight"] == 0.01
    assert json.loads((outs["0.01"] / "training_args.json").read_text())["l1_weight"] == 0.01


def test_distill_logs_the_l1_term(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    student = tmp_path / "student"
    result = run_cli("distill", tiny_teacher_dir, "--student-layers", "2", "--data-dir", tiny_glue_dir,
                     "--l1-weight", "0.01", "--output-dir", student, *FLAGS)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [entry for entry in _log_history(student) if "loss" in entry]
    assert all(entry["l1_penalty"] > 0 and "loss_distill" in entry for entry in logs)
    assert json.loads((student / "compression.json").read_text())["steps"][-1]["settings"]["l1_weight"] == 0.01


def test_gradual_prune_logs_the_l1_term(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    pruned = tmp_path / "pruned"  # in process (the CLI's own entry point), to keep this file fast
    code = main(["prune", str(tiny_teacher_dir), "--data-dir", str(tiny_glue_dir), "--sparsity", "0.5",
                 "--end-step", "2", "--update-frequency", "2", "--l1-weight", "0.01", "--output-dir", str(pruned),
                 *FLAGS])  # fmt: skip
    assert code == 0
    logs = [entry for entry in _log_history(pruned) if "loss" in entry]
    assert len(logs) == 2 and all(entry["l1_penalty"] > 0 for entry in logs)
    report = json.loads((pruned / "compression.json").read_text())
    assert report["steps"][-1]["settings"]["l1_weight"] == 0.01
    assert report["result"]["sparsity"]["global"] == pytest.approx(0.5, abs=1e-3)


# --- bad input: one sentence, exit 2 -----------------------------------------------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["finetune", "--l1-weight=-0.1"], "--l1-weight must be a finite number, 0 (off) or more, got -0.1."),
    (["finetune", "--l1_weight", "nan"], "--l1-weight must be a finite number, 0 (off) or more, got nan."),
    (["distill", "--l1-weight", "inf"], "--l1-weight must be a finite number, 0 (off) or more, got inf."),
    (["prune", "--method", "wanda", "--l1-weight", "0.1"], "--l1-weight works with gradual pruning, which prunes "
     "while training; one-shot, width, depth and vocab pruning cut before any training (--recovery-steps only heals "
     "the cut model), so run hfcompress finetune --l1-weight first and prune its output."),
    (["prune", "--structure", "depth", "--num-layers", "2", "--l1-weight", "0.1"], "--l1-weight works with gradual"),
])  # fmt: skip
def test_bad_l1_weights_are_one_sentence(argv, message, tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys,
                                         monkeypatch):  # fmt: skip
    """A negative or non-finite weight, or one for a prune that does not train, exits 2 with one sentence, before
    any training and with nothing written."""
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "train", lambda *a, **k: pytest.fail("training started although the input was bad"))
    command, *flags = argv
    out = tmp_path / "out"
    code = main([command, str(tiny_teacher_dir), *flags, "--task", "sst2", "--data-dir", str(tiny_glue_dir),
                 "--latency-runs", "0", "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"hfcompress {command}: error: {message}"), err[-2000:]
    assert not out.exists()

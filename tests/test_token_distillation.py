"""Token-level distillation of causal LMs: exact gradient accumulation, students from teacher layers."""

import pytest
import torch

from hfcompress import DistillationArguments, DistillationTrainer, build_student_from_teacher
from hfcompress.errors import UsageError
from tests.conftest import lm_rows, pad_lm_batch, tiny_lm


def _one_step(tmp_path, batch: int, accumulation: int, **losses):
    teacher = tiny_lm("llama", vocab_size=97, seed=0)
    student = build_student_from_teacher(tiny_lm("llama", vocab_size=97, seed=1), [0, 3])
    args = DistillationArguments(
        output_dir=str(tmp_path / f"b{batch}x{accumulation}"), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.5, optim="sgd",
        lr_scheduler_type="constant", max_grad_norm=0.0, report_to="none", seed=0, logging_steps=1,
        use_cpu=True, **losses,
    )  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, layer_map={0: 0, 1: 3},
                                  train_dataset=lm_rows(), data_collator=pad_lm_batch)  # fmt: skip
    assert trainer.token_level
    out = trainer.train()
    return out.training_loss, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize(
    "losses",
    [
        dict(distill_weight=0.5, hard_label_weight=0.5),
        dict(distill_weight=1.0, hard_label_weight=0.0, divergence="jsd", temperature=2.0),
        dict(distill_weight=0.5, hard_label_weight=0.5, divergence="reverse_kl", hidden_weight=1.0),
    ],
)
def test_accumulation_2x4_equals_batch_8(tmp_path, losses):
    loss_8, params_8 = _one_step(tmp_path, 8, 1, **losses)
    loss_4, params_4 = _one_step(tmp_path, 4, 2, **losses)
    assert loss_4 == pytest.approx(loss_8, rel=1e-5)
    changed = 0
    for name, value in params_8.items():
        torch.testing.assert_close(params_4[name], value, atol=2e-6, rtol=1e-5)
        changed += int(not torch.equal(value, tiny_state()[name])) if name in tiny_state() else 0
    assert changed > 0  # the step did move the student


_STATE = {}


def tiny_state():
    if not _STATE:
        _STATE.update(build_student_from_teacher(tiny_lm("llama", vocab_size=97, seed=1), [0, 3]).state_dict())
    return _STATE


def test_loss_averages_over_real_tokens_of_the_whole_batch(tmp_path):
    """The reported loss of the batch of 8 is the token-weighted mean cross-entropy, computed directly."""
    loss, _ = _one_step(tmp_path, 8, 1, distill_weight=0.0, hard_label_weight=1.0)
    student = build_student_from_teacher(tiny_lm("llama", vocab_size=97, seed=1), [0, 3])
    batch = pad_lm_batch(list(lm_rows()))
    with torch.no_grad():
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 97), targets.reshape(-1), reduction="sum")
    assert loss == pytest.approx((nll / (targets != -100).sum()).item(), rel=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_student_from_teacher_layers_loads_and_generates(tmp_path, family):
    from transformers import AutoModelForCausalLM

    teacher = tiny_lm(family, vocab_size=97)
    student = build_student_from_teacher(teacher, [0, 3])
    student.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert again.config.num_hidden_layers == 2
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, student(input_ids=ids).logits)
        generated = again.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert generated.shape == (1, 9)  # the KV cache works with the renumbered layers


def test_teacher_and_student_must_share_the_vocabulary():
    with pytest.raises(UsageError, match="vocabularies differ"):
        DistillationTrainer(model=tiny_lm("llama", vocab_size=50), teacher=tiny_lm("llama", vocab_size=97),
                            args=DistillationArguments(output_dir="unused", report_to="none"))  # fmt: skip

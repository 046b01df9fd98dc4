"""The chunked token loss (lm_head over chunks of final hidden states) equals the plain one, gradients included."""

import pytest
import torch

from hfcompress import DistillationArguments, DistillationTrainer, build_student_from_teacher
from hfcompress.errors import UsageError
from tests.conftest import lm_rows, pad_lm_batch, tiny_lm
from tests.test_token_distillation import _one_step


def _loss_and_grads(tmp_path, family, chunk, **losses):
    teacher = tiny_lm(family, vocab_size=97, seed=0)
    student = build_student_from_teacher(tiny_lm(family, vocab_size=97, seed=1), [0, 3])
    args = DistillationArguments(output_dir=str(tmp_path / f"c{chunk}"), report_to="none", use_cpu=True,
                                 loss_chunk_tokens=chunk, **losses)  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=lm_rows(),
                                  data_collator=pad_lm_batch)  # fmt: skip
    batch = pad_lm_batch(list(lm_rows()))
    real = int((batch["labels"][:, 1:] != -100).sum())
    student.train()
    loss = trainer.compute_loss(student, batch, num_items_in_batch=torch.tensor(real))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "family,losses",
    [
        ("llama", dict(distill_weight=0.5, hard_label_weight=0.5)),
        ("gpt2", dict(distill_weight=1.0, hard_label_weight=0.0, divergence="jsd", temperature=2.0)),
        ("qwen2", dict(distill_weight=0.5, hard_label_weight=0.5, divergence="reverse_kl", hidden_weight=1.0)),
    ],
)
def test_chunked_loss_equals_the_plain_loss(tmp_path, family, losses):
    plain_loss, plain_grads = _loss_and_grads(tmp_path, family, 0, **losses)
    chunked_loss, chunked_grads = _loss_and_grads(tmp_path, family, 7, **losses)  # 7 does not divide 66 tokens
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert plain_grads.keys() == chunked_grads.keys() and plain_grads
    for name in plain_grads:
        torch.testing.assert_close(chunked_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_training_step_matches_and_accumulates(tmp_path):
    losses = dict(distill_weight=0.5, hard_label_weight=0.5)
    loss_plain, params_plain = _one_step(tmp_path / "plain", 8, 1, **losses)
    loss_chunked, params_chunked = _one_step(tmp_path / "chunked", 4, 2, loss_chunk_tokens=16, **losses)
    assert loss_chunked == pytest.approx(loss_plain, rel=1e-5)
    for name in params_plain:
        torch.testing.assert_close(params_chunked[name], params_plain[name], rtol=1e-4, atol=1e-6)


def test_negative_chunk_size_is_refused(tmp_path):
    with pytest.raises(UsageError, match="--loss-chunk-tokens must be 0"):
        DistillationArguments(output_dir=str(tmp_path), loss_chunk_tokens=-1)

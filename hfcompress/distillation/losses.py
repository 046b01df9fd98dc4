"""Distillation losses as pure functions of tensors. Each returns a scalar mean over the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2 (Hinton et al., 2015).

    The T^2 factor keeps the gradient scale independent of the temperature.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def soft_target_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The soft-target loss of a regression head (STS-B): match the teacher's prediction."""
    return F.mse_loss(student_logits.float(), teacher_logits.float())


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on class ids, or MSE when the head has one output (regression)."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits, labels)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over examples of each example's mean over its real tokens; `values` and `mask` are (batch, seq).

    Weighting examples (not tokens) equally makes the loss of a batch of 8 equal the average of two
    batches of 4, so gradient accumulation gives the same update as one large batch.
    """
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    per_example = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return per_example.mean()


def hidden_state_mse(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error between hidden states (batch, seq, dim), ignoring padding (TinyBERT)."""
    per_token = (student_hidden - teacher_hidden).pow(2).mean(dim=-1)
    return _masked_mean(per_token, attention_mask)


def hidden_state_cosine(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - cosine similarity of hidden-state directions, per token (DistilBERT's cosine loss)."""
    per_token = 1.0 - F.cosine_similarity(student_hidden, teacher_hidden, dim=-1)
    return _masked_mean(per_token, attention_mask)


def attention_mse(
    student_attention: torch.Tensor,
    teacher_attention: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between attention maps (batch, heads, query, key) over real query tokens (TinyBERT).

    When the head counts differ, the maps are first averaged over heads.
    """
    if student_attention.shape[1] != teacher_attention.shape[1]:
        student_attention = student_attention.mean(dim=1, keepdim=True)
        teacher_attention = teacher_attention.mean(dim=1, keepdim=True)
    per_query = (student_attention - teacher_attention).pow(2).mean(dim=(1, 3))
    return _masked_mean(per_query, attention_mask)

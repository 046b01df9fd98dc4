"""Distillation losses as pure functions of tensors. Each returns a scalar mean over the batch.

Every loss computes in float32 whatever its inputs' dtypes, so a bfloat16 or float16 teacher (`--teacher-dtype`)
can teach a float32 student: the teacher's outputs are upcast here, the student's keep their gradient path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2 (Hinton et al., 2015).

    The T^2 factor keeps the gradient scale independent of the temperature.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
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
    per_token = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(dim=-1)
    return _masked_mean(per_token, attention_mask)


def hidden_state_cosine(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - cosine similarity of hidden-state directions, per token (DistilBERT's cosine loss)."""
    per_token = 1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)
    return _masked_mean(per_token, attention_mask)


def attention_mse(
    student_attention: torch.Tensor,
    teacher_attention: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between attention maps (batch, heads, query, key) over real query tokens (TinyBERT).

    When the head counts differ, the maps are first averaged over heads.
    """
    student_attention, teacher_attention = student_attention.float(), teacher_attention.float()
    if student_attention.shape[1] != teacher_attention.shape[1]:
        student_attention = student_attention.mean(dim=1, keepdim=True)
        teacher_attention = teacher_attention.mean(dim=1, keepdim=True)
    per_query = (student_attention - teacher_attention).pow(2).mean(dim=(1, 3))
    return _masked_mean(per_query, attention_mask)


# -- token-level losses of causal LMs -------------------------------------------------------------------------
# Each takes (tokens, vocab) logits of the real tokens only and returns one value per token; the trainer sums
# them and divides by the number of real tokens in the whole accumulated batch (`num_items_in_batch`).

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) per token, on temperature-softened distributions, times T^2 (mode-covering)."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(dim=-1) * temperature**2


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(student || teacher) per token, times T^2 (mode-seeking; MiniLLM's objective)."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return (s.exp() * (s - t)).sum(dim=-1) * temperature**2


def generalized_jsd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, beta: float = 0.5
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence per token (Agarwal et al., 2024, GKD), times T^2.

    With the mixture M = beta * P_teacher + (1 - beta) * P_student, it is
    beta * KL(P_teacher || M) + (1 - beta) * KL(P_student || M); beta = 0.5 is the symmetric JSD.
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be strictly between 0 and 1, got {beta}.")
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), dim=0)
    kl_teacher = (t.exp() * (t - m)).sum(dim=-1)
    kl_student = (s.exp() * (s - m)).sum(dim=-1)
    return (beta * kl_teacher + (1 - beta) * kl_student) * temperature**2


def token_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str, temperature: float, beta: float = 0.5
) -> torch.Tensor:
    if kind == "forward_kl":
        return forward_kl(student_logits, teacher_logits, temperature)
    if kind == "reverse_kl":
        return reverse_kl(student_logits, teacher_logits, temperature)
    if kind == "jsd":
        return generalized_jsd(student_logits, teacher_logits, temperature, beta)
    raise ValueError(f"Unknown divergence {kind!r}; choose one of {', '.join(DIVERGENCES)}.")


def top_k_forward_kl(
    student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, teacher_ids: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(teacher_k || student) per token from the teacher's k most likely tokens only (a teacher cache), times T^2.

    `teacher_log_probs` / `teacher_ids` are (tokens, k): the teacher's log-probabilities at temperature 1 and
    their token ids. The teacher's distribution is those k tokens renormalised at temperature T (log-probabilities
    divided by T differ from logits divided by T by a constant per token, which the renormalisation removes); the
    student's is its full-vocabulary softmax at T, read at the same ids, so the student's mass outside the k tokens
    is pushed down too. With k equal to the vocabulary size this is exactly `forward_kl`.
    """
    t = F.log_softmax(teacher_log_probs.float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, teacher_ids.long())
    return (t.exp() * (t - s)).sum(dim=-1) * temperature**2


def next_token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each real token's next-token prediction: (tokens, vocab) logits, (tokens,) ids."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def hidden_mse_per_token(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """(tokens, dim) hidden states -> (tokens,) mean squared error."""
    return (student_hidden.float() - teacher_hidden.float()).pow(2).mean(dim=-1)


def hidden_cosine_per_token(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)

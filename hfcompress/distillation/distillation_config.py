"""Settings of a distillation run: the Trainer's own arguments plus the loss weights."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import FinetuneArguments
from ..errors import UsageError

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")


def parse_layer_map(spec: str | None) -> dict[int, int] | None:
    """'0:1,1:3,2:5' -> {0: 1, 1: 3, 2: 5} (student layer -> teacher layer)."""
    if not spec:
        return None
    mapping = {}
    for pair in spec.split(","):
        student, _, teacher = pair.partition(":")
        if not (student.strip().isdigit() and teacher.strip().isdigit()):
            raise UsageError(f"--layer_map must look like 0:1,1:3 (student:teacher), not '{spec}'.")
        mapping[int(student)] = int(teacher)
    return mapping


@dataclass
class DistillationArguments(FinetuneArguments):
    """Training arguments plus the weights of each distillation loss.

    The total loss is
    `distill_weight * KL_T + hard_label_weight * CE + hidden_weight * MSE_h + attention_weight * MSE_a
    + cosine_weight * COS`.
    """

    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the soft-target loss (> 0)."})
    distill_weight: float = field(
        default=0.5, metadata={"help": "Weight of the soft-target KL loss (scaled by temperature^2)."}
    )
    hard_label_weight: float = field(
        default=0.5,
        metadata={"help": "Weight of the loss on the true labels (cross-entropy, MSE for STS-B)."},
    )
    hidden_weight: float = field(
        default=0.0, metadata={"help": "Weight of the hidden-state MSE between mapped layers."}
    )
    attention_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the attention-map MSE between mapped layers (uses eager attention)."},
    )
    cosine_weight: float = field(
        default=0.0, metadata={"help": "Weight of the cosine loss between mapped hidden states."}
    )
    divergence: str = field(
        default="forward_kl",
        metadata={
            "help": "Soft-target loss: forward_kl (KL(teacher||student), Hinton), reverse_kl (KL(student||teacher)) "
            "or jsd (generalized Jensen-Shannon with --jsd-beta). Causal LMs compare every real token."
        },
    )
    jsd_beta: float = field(
        default=0.5, metadata={"help": "jsd: weight of the teacher in the mixture, strictly between 0 and 1."}
    )
    loss_chunk_tokens: int = field(
        default=0,
        metadata={
            "help": "Causal LMs: compute the KD and cross-entropy losses from the final hidden states through "
            "lm_head, this many tokens at a time, recomputed in the backward pass, so full-vocabulary logits are "
            "never held for the whole batch (for large vocabularies). 0: off."
        },
    )
    layer_map: str | None = field(
        default=None,
        metadata={
            "help": "Student-to-teacher layer pairs for hidden/attention losses, e.g. '0:1,1:3,2:5'. Default: the "
            "teacher layers the student was copied from, else evenly spaced."
        },
    )
    teacher_dtype: str = field(
        default="auto",
        metadata={
            "help": "The frozen teacher's dtype: auto (bfloat16 on CUDA GPUs that support it, float16 on other CUDA "
            "GPUs, else as loaded), float32, bfloat16 or float16. The losses are computed in float32 and the student "
            "keeps its dtype. Under FSDP the mixed-precision policy decides, so only auto is accepted."
        },
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={
            "help": "Folder caching the teacher's outputs on the training set (classifiers: logits; causal LMs: "
            "each token's top-k log-probabilities), with a fingerprint of teacher, tokenizer, data and max length: "
            "built when missing, reused when the fingerprint matches (the teacher then never runs in training), "
            "refused when stale. Serves the soft-target loss only (no hidden, attention or cosine losses)."
        },
    )
    teacher_cache_top_k: int = field(
        default=64,
        metadata={
            "help": "Causal LMs with --teacher-cache: tokens kept per position. The KD loss is then KL(teacher's top "
            "k renormalised || student's full softmax read at those k ids), the forward KL when k = vocabulary size."
        },
    )
    teacher_cache_rebuild: bool = field(
        default=False, metadata={"help": "Rebuild --teacher-cache even when it exists (a stale one, say)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise UsageError(f"temperature must be greater than 0, got {self.temperature}.")
        weights = {
            "distill_weight": self.distill_weight,
            "hard_label_weight": self.hard_label_weight,
            "hidden_weight": self.hidden_weight,
            "attention_weight": self.attention_weight,
            "cosine_weight": self.cosine_weight,
        }
        negative = [name for name, value in weights.items() if value < 0]
        if negative:
            raise UsageError(f"Loss weights must be >= 0, but {', '.join(negative)} is negative.")
        if not any(weights.values()):
            raise UsageError("At least one loss weight must be greater than 0; all of them are 0.")
        parse_layer_map(self.layer_map)
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise UsageError(
                f"--teacher-dtype must be one of {', '.join(TEACHER_DTYPES)}, not {self.teacher_dtype!r}."
            )
        if self.teacher_dtype != "auto" and self.fsdp:
            raise UsageError(f"--teacher-dtype {self.teacher_dtype} cannot be used with --fsdp, where the FSDP "
                             "mixed-precision policy sets the teacher's dtype; leave it at auto.")  # fmt: skip
        from .losses import DIVERGENCES

        if self.divergence not in DIVERGENCES:
            raise UsageError(f"--divergence must be one of {', '.join(DIVERGENCES)}, not {self.divergence!r}.")
        if not 0.0 < self.jsd_beta < 1.0:
            raise UsageError(f"--jsd-beta must be strictly between 0 and 1, got {self.jsd_beta}.")
        if self.loss_chunk_tokens < 0:
            raise UsageError(f"--loss-chunk-tokens must be 0 (off) or more, got {self.loss_chunk_tokens}.")
        if self.teacher_cache_top_k < 1:
            raise UsageError(f"--teacher-cache-top-k must be at least 1, got {self.teacher_cache_top_k}.")
        if self.teacher_cache_rebuild and not self.teacher_cache:
            raise UsageError("--teacher-cache-rebuild needs --teacher-cache FOLDER.")
        if self.teacher_cache:
            from .teacher_cache import check_cache_settings

            check_cache_settings(self)  # the losses a cache can serve; the divergence is checked per model kind

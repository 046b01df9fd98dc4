"""Settings of gradual magnitude pruning, shared by the callback, the Trainer and the CLI."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from .budget import parse_parameter_budget
from .schedules import SCHEDULES, is_update_step

STRUCTURES = ("unstructured", "2:4", "ffn", "heads")
SCOPES = ("global", "per-layer")
METHODS = ("gradual", "magnitude", "wanda", "sparsegpt")
ONESHOT_STRUCTURES = ("unstructured", "2:4", "4:8")  # any n:m is accepted for one-shot methods
STRUCTURED = ("width", "depth")  # Minitron-style: one shot from activation importance, then optional recovery
VOCAB_SOURCES = ("train", "train+validation")  # --structure vocab: the texts whose tokens are kept
IMPORTANCES = ("magnitude", "activation", "taylor")  # FFN neuron scores: --structure ffn (gradual) and width


@dataclass
class PruningConfig:
    """What to prune, how much, and how: gradually while training (Zhu & Gupta's gradual magnitude pruning),
    or in one shot from calibration data (magnitude, Wanda, SparseGPT)."""

    method: str = field(
        default="gradual",
        metadata={
            "help": "gradual: magnitude pruning on a schedule while training. One-shot, from a few calibration "
            "samples of the training data, block by block: magnitude, wanda (|W| x input norm) or sparsegpt "
            "(OBS weight updates)."
        },
    )
    sparsity: float | None = field(
        default=None,
        metadata={
            "help": "Target sparsity in [0, 1): fraction of weights (ffn: of FFN neurons) set to zero. "
            "Default: 0.5 for 2:4 and one-shot methods (n:m sets it to 1 - n/m), else 0.9."
        },
    )
    initial_sparsity: float = field(default=0.0, metadata={"help": "Sparsity at the start step."})
    start_step: int = field(default=0, metadata={"help": "Optimizer step at which pruning starts."})
    end_step: int | None = field(
        default=None,
        metadata={"help": "Step at which the target sparsity is reached. Default: 70%% of the run's steps."},
    )
    update_frequency: int = field(default=10, metadata={"help": "Recompute masks every this many steps."})
    schedule: str = field(default="cubic", metadata={"help": "Sparsity schedule: cubic, linear or constant."})
    scope: str = field(
        default="global",
        metadata={"help": "global: one magnitude threshold across all pruned layers; per-layer: one per layer."},
    )
    structure: str = field(
        default="unstructured",
        metadata={
            "help": "unstructured (any weight), 2:4 (2 of every 4 consecutive input weights, sparsity 0.5), "
            "ffn (remove FFN neurons; the saved model is smaller and faster) or heads (remove attention heads; "
            "families whose config states head_dim, such as Llama and Qwen2). Minitron-style, in one shot from "
            "activation importance on calibration data: width (--ffn-size, --num-heads, --num-kv-heads, "
            "--hidden-size; Llama, Mistral, Qwen2/3) or depth (--num-layers; any family), or either to "
            "--parameter-budget. vocab: keep only the "
            "tokens of the task's texts in the embeddings and the tokenizer (WordPiece tokenizers: BERT, MiniLM, "
            "DistilBERT, ELECTRA), with no training."
        },
    )
    modules: str | None = field(
        default=None,
        metadata={
            "help": "Regex on module names selecting the Linear layers to prune. Default: every Linear layer "
            "inside the transformer blocks (never embeddings, LayerNorm, biases or the classifier)."
        },
    )
    ffn_size: int | None = field(
        default=None,
        metadata={"help": "structure ffn or width: target intermediate size (ffn: instead of --sparsity)."},
    )
    num_heads: int | None = field(
        default=None,
        metadata={"help": "structure width: query heads to keep per layer (a multiple of the key/value heads kept)."},
    )
    num_kv_heads: int | None = field(
        default=None,
        metadata={"help": "structure width: key/value head groups to keep per layer (each with its query heads)."},
    )
    hidden_size: int | None = field(
        default=None, metadata={"help": "structure width: hidden (embedding) channels to keep."}
    )
    num_layers: int | None = field(default=None, metadata={"help": "structure depth: blocks to keep."})
    parameter_budget: str | None = field(
        default=None,
        metadata={
            "help": "structure width or depth: the parameters to keep, as a fraction of the model's (0.5) or a "
            "count (67M, 1.2B, 500K). Depth keeps the most blocks that fit; width shrinks the FFN and hidden sizes "
            "by one common factor (multiples of 8 where the config allows), the largest that fit, keeping any "
            "--ffn-size, --hidden-size, --num-heads or --num-kv-heads given as they are."
        },
    )
    importance: str | None = field(
        default=None,
        metadata={
            "help": "structure ffn or width: how FFN neurons are scored. magnitude: norms of each neuron's weights; "
            "activation: the size of its activation on data (ffn: mean |a| over the training tokens since the "
            "last mask update; width: L2 norm over the calibration tokens, as Minitron); taylor: |activation x "
            "gradient| of the loss, summed over each batch's tokens (Molchanov et al.). Default: magnitude for "
            "ffn, activation for width. Attention heads and hidden channels keep their own scoring."
        },
    )
    vocab_source: str = field(
        default="train",
        metadata={
            "help": "structure vocab: the texts whose tokens are kept. train: the dev set then shows what "
            "words the kept vocabulary lacks cost, and the report counts the dev tokens dropped; train+validation: "
            "the dev texts keep their exact logits too (their tokens, not their labels, choose the vocabulary)."
        },
    )
    vocab_min_count: int = field(
        default=1,
        metadata={
            "help": "structure vocab: keep tokens seen at least this many times in those texts (special and added "
            "tokens always); above 1, rare words are split into kept pieces or read as the unknown token."
        },
    )

    calibration_samples: int = field(
        default=128, metadata={"help": "One-shot methods: calibration samples (causal LMs: blocks of --block-size)."}
    )
    dampening: float = field(
        default=0.01, metadata={"help": "sparsegpt: dampening added to the Hessian's diagonal, x its mean."}
    )
    sparsegpt_block_size: int = field(
        default=128, metadata={"help": "sparsegpt: columns updated together (a multiple of m for n:m)."}
    )
    recovery_steps: int = field(
        default=0,
        metadata={
            "help": "One-shot methods: after pruning, distil this many steps from the unpruned model (or --teacher) "
            "with the pruned weights held at zero."
        },
    )

    def __post_init__(self):
        if self.modules is not None:
            import re

            try:
                re.compile(self.modules)
            except re.error as err:
                raise UsageError(f"--modules '{self.modules}' is not a valid regular expression: {err}.") from None
        if self.method not in METHODS:
            raise UsageError(f"Unknown pruning method '{self.method}'; choose one of: {', '.join(METHODS)}.")
        self._check_importance()
        if self.structure == "vocab":
            self._check_vocab()
            return
        if (self.vocab_source, self.vocab_min_count) != ("train", 1):
            raise UsageError("--vocab-source and --vocab-min-count apply to --structure vocab.")
        if self.structure in STRUCTURED:
            self._check_structured()
            return
        if self.method != "gradual":
            self._check_oneshot()
            return
        self._no_targets("gradual pruning")
        self._no_calibration()
        if self.sparsity is None:
            self.sparsity = 0.5 if self.structure == "2:4" else 0.9
        if not 0.0 <= self.sparsity < 1.0:
            raise UsageError(f"Sparsity must be in [0, 1), got {self.sparsity}.")
        if self.sparsity > 0.99:
            logging.getLogger("hfcompress").warning(
                "Sparsity %s keeps %.3g%% of the pruned weights; models rarely keep their accuracy below 1%%.",
                self.sparsity, 100 * (1 - self.sparsity),
            )  # fmt: skip
        if not 0.0 <= self.initial_sparsity <= self.sparsity:
            raise UsageError(
                f"--initial-sparsity must be between 0 and the target sparsity {self.sparsity}, "
                f"got {self.initial_sparsity}."
            )
        if self.schedule not in SCHEDULES:
            raise UsageError(f"Unknown schedule '{self.schedule}'; choose one of: {', '.join(SCHEDULES)}.")
        if self.scope not in SCOPES:
            raise UsageError(f"Unknown scope '{self.scope}'; choose global or per-layer.")
        if self.structure not in STRUCTURES:
            extra = (
                " (other n:m patterns need --method magnitude, wanda or sparsegpt)" if ":" in self.structure else ""
            )
            choices = ", ".join((*STRUCTURES, *STRUCTURED, "vocab"))
            raise UsageError(f"Unknown structure '{self.structure}'; choose one of: {choices}{extra}.")
        if self.structure == "2:4" and self.sparsity != 0.5:
            raise UsageError(
                f"2:4 pruning removes exactly half the weights; pass --sparsity 0.5, not {self.sparsity}."
            )
        if self.recovery_steps:
            raise UsageError("--recovery-steps applies to one-shot methods (magnitude, wanda, sparsegpt).")
        if self.structure != "ffn" and self.ffn_size is not None:
            raise UsageError("--ffn-size only applies to --structure ffn.")
        if self.start_step < 0:
            raise UsageError(f"--start-step must be 0 or more, got {self.start_step}.")
        if self.update_frequency < 1:
            raise UsageError(f"--update-frequency must be at least 1, got {self.update_frequency}.")
        if self.end_step is not None and self.end_step <= self.start_step:
            raise UsageError(f"--end-step {self.end_step} must come after --start-step {self.start_step}.")

    def _check_importance(self) -> None:
        if self.importance is None:
            self.importance = {"ffn": "magnitude", "width": "activation"}.get(self.structure)
            return
        if self.importance not in IMPORTANCES:
            raise UsageError(f"Unknown importance '{self.importance}'; choose one of: {', '.join(IMPORTANCES)}.")
        if self.structure not in ("ffn", "width"):
            raise UsageError(
                f"--importance applies to FFN neurons (--structure ffn or width), not to --structure {self.structure}."
            )
        no_ffn = self.ffn_size is None and self.parameter_budget is None  # a budget chooses the FFN size
        if self.structure == "width" and no_ffn and self.importance != "activation":
            raise UsageError(
                f"--importance {self.importance} scores FFN neurons, so with --structure width it needs --ffn-size "
                "or --parameter-budget."
            )

    def _no_schedule(self, what: str) -> None:
        """Refuse the gradual schedule's flags where nothing is pruned on a schedule (they would be ignored)."""
        defaults = {"initial_sparsity": 0.0, "start_step": 0, "end_step": None, "update_frequency": 10,
                    "schedule": "cubic", "scope": "global"}  # fmt: skip
        for name, default in defaults.items():
            if getattr(self, name) != default:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} sets gradual pruning's schedule; {what} prunes in one shot, so leave it out."
                )

    def _no_calibration(self) -> None:
        """Refuse the one-shot methods' flags on gradual pruning, which has no calibration pass to use them."""
        defaults = {"calibration_samples": 128, "dampening": 0.01, "sparsegpt_block_size": 128}
        for name, default in defaults.items():
            if getattr(self, name) != default:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} applies to one-shot pruning (--method magnitude, wanda, sparsegpt, or --structure width "
                    "or depth), not to gradual pruning."
                )

    def _no_targets(self, what: str) -> None:
        for name in ("num_heads", "num_kv_heads", "hidden_size", "num_layers", "parameter_budget"):
            if getattr(self, name) is not None:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} applies to --structure width or depth, not to {what}.")

    def _check_structured(self) -> None:
        if self.method != "gradual":
            raise UsageError(
                f"--structure {self.structure} prunes in one shot from activation importance; leave out "
                f"--method {self.method}."
            )
        if self.sparsity is not None:
            raise UsageError(f"--structure {self.structure} takes target sizes, not --sparsity.")
        self._no_schedule(f"--structure {self.structure}")
        width = (self.ffn_size, self.num_heads, self.num_kv_heads, self.hidden_size)
        if self.structure == "width":
            if self.num_layers is not None:
                raise UsageError("--num-layers applies to --structure depth.")
            if all(v is None for v in width) and self.parameter_budget is None:
                raise UsageError(
                    "--structure width needs a target: --ffn-size, --num-heads, --num-kv-heads, --hidden-size or "
                    "--parameter-budget."
                )
            if self.parameter_budget is not None and self.ffn_size is not None and self.hidden_size is not None:
                raise UsageError(
                    "--parameter-budget chooses the FFN and hidden sizes not given; with --ffn-size and "
                    "--hidden-size both given it has nothing left to choose, so leave one of the three out."
                )
        else:
            if any(v is not None for v in width):
                raise UsageError(
                    "--structure depth takes --num-layers or --parameter-budget; the width targets apply to width."
                )
            if self.num_layers is not None and self.parameter_budget is not None:
                raise UsageError("--parameter-budget and --num-layers both set the blocks to keep; give one of them.")
            if self.num_layers is None and self.parameter_budget is None:
                raise UsageError(
                    "--structure depth needs --num-layers (the number of blocks to keep) or --parameter-budget."
                )
        if self.parameter_budget is not None:
            parse_parameter_budget(self.parameter_budget)
        for name in ("ffn_size", "num_heads", "num_kv_heads", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
        if self.calibration_samples < 1:
            raise UsageError(f"--calibration-samples must be at least 1, got {self.calibration_samples}.")
        if self.recovery_steps < 0:
            raise UsageError(f"--recovery-steps must be 0 or more, got {self.recovery_steps}.")

    def _check_vocab(self) -> None:
        if self.method != "gradual":
            raise UsageError(
                f"--structure vocab prunes in one shot from the task's texts; leave out --method {self.method}."
            )
        if self.sparsity is not None or self.ffn_size is not None:
            raise UsageError(
                "--structure vocab keeps the tokens the task's texts use; it takes no --sparsity or --ffn-size."
            )
        self._no_targets("--structure vocab")
        self._no_schedule("--structure vocab")
        if self.recovery_steps:
            raise UsageError(
                "--structure vocab keeps the model's outputs on the task's texts; leave out --recovery-steps."
            )
        if self.vocab_source not in VOCAB_SOURCES:
            raise UsageError(f"--vocab-source must be train or train+validation, not '{self.vocab_source}'.")
        if self.vocab_min_count < 1:
            raise UsageError(f"--vocab-min-count must be at least 1, got {self.vocab_min_count}.")

    def _check_oneshot(self) -> None:
        from .oneshot_scores import parse_n_m

        n_m = parse_n_m(self.structure)
        if self.structure != "unstructured" and not n_m:
            raise UsageError(
                f"One-shot pruning (--method {self.method}) takes --structure unstructured or n:m (2:4, 4:8), "
                f"not '{self.structure}'."
            )
        if n_m:
            n, m = n_m
            if not 0 < n < m:
                raise UsageError(f"--structure {self.structure}: n:m keeps n of every m weights, so 0 < n < m.")
            if self.sparsity is not None and abs(self.sparsity - (1 - n / m)) > 1e-9:
                raise UsageError(
                    f"{n}:{m} pruning removes a fraction {1 - n / m:g}; leave out --sparsity {self.sparsity}."
                )
            self.sparsity = 1 - n / m
            if self.sparsegpt_block_size % m:
                raise UsageError(f"--sparsegpt-block-size must be a multiple of {m} for {n}:{m} pruning.")
        if self.sparsity is None:
            self.sparsity = 0.5
        if not 0.0 <= self.sparsity < 1.0:
            raise UsageError(f"Sparsity must be in [0, 1), got {self.sparsity}.")
        if self.calibration_samples < 1:
            raise UsageError(f"--calibration-samples must be at least 1, got {self.calibration_samples}.")
        if not 0.0 <= self.dampening < 1.0:
            raise UsageError(f"--dampening must be in [0, 1), got {self.dampening}.")
        if self.sparsegpt_block_size < 1:
            raise UsageError(f"--sparsegpt-block-size must be at least 1, got {self.sparsegpt_block_size}.")
        if self.recovery_steps < 0:
            raise UsageError(f"--recovery-steps must be 0 or more, got {self.recovery_steps}.")
        if self.ffn_size is not None:
            raise UsageError("--ffn-size only applies to --structure ffn with gradual pruning.")
        self._no_targets(f"--method {self.method}")
        self._no_schedule(f"--method {self.method}")

    def resolve_end_step(self, max_steps: int) -> int:
        """The end step for a run of `max_steps` optimizer steps, checked against that run."""
        end = self.end_step if self.end_step is not None else max(self.start_step + 1, int(0.7 * max_steps))
        if end > max_steps and self.end_step is not None:
            raise UsageError(f"--end-step {end} is past the run's last step ({max_steps}).")
        if end <= self.start_step or end > max_steps:
            raise UsageError(
                f"The run has only {max_steps} steps, too few to prune after --start-step {self.start_step}."
            )
        return end

    def sparsity_at(self, step: int, end_step: int) -> float:
        fn = SCHEDULES[self.schedule]
        return fn(step, self.initial_sparsity, self.sparsity, self.start_step, end_step, self.update_frequency)

    def is_update_step(self, step: int, end_step: int) -> bool:
        return is_update_step(step, self.start_step, end_step, self.update_frequency)

    def to_dict(self) -> dict:
        return asdict(self)

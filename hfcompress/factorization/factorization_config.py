"""Settings of low-rank factorization, shared by the Python API and `hfcompress factorize`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UsageError

DEFAULT_DAMPENING = 0.01


@dataclass
class FactorizationConfig:
    """How much of each Linear layer to keep (one of --rank, --energy, --parameter-ratio), which layers, and how."""

    rank: int | None = field(
        default=None,
        metadata={"help": "Keep this many singular values in every targeted layer (layers it would not shrink stay)."},
    )
    energy: float | None = field(
        default=None,
        metadata={
            "help": "Per layer, keep the fewest singular values holding this fraction of the energy (sum of squares), "
            "in (0, 1]; with --whiten, of the layer's output energy on the calibration data."
        },
    )
    parameter_ratio: float | None = field(
        default=None,
        metadata={
            "help": "One budget for all targeted layers: their weights shrink to this fraction, in (0, 1), spread "
            "by singular-value energy (the values with the most energy per parameter are kept first)."
        },
    )
    whiten: bool = field(
        default=False,
        metadata={
            "help": "Activation-aware SVD (SVD-LLM): factorize W S, S the Cholesky factor of the layer's calibration "
            "inputs X^T X, so the kept rank best preserves the outputs on real data rather than the weights."
        },
    )
    dampening: float = field(
        default=DEFAULT_DAMPENING,
        metadata={"help": "--whiten: added to the diagonal of X^T X, x its mean, so the Cholesky factor exists."},
    )
    modules: str | None = field(
        default=None,
        metadata={
            "help": "Regex on module names selecting the Linear layers to factorize. Default: every Linear (and "
            "GPT-2 Conv1D) inside the transformer blocks, never the classifier or lm_head."
        },
    )
    calibration_samples: int = field(
        default=128,
        metadata={
            "help": "Training samples (causal LMs: blocks of --block-size) on which each layer's output error is "
            "measured, and --whiten's X^T X gathered."
        },
    )
    recovery_steps: int = field(
        default=0,
        metadata={"help": "After factorizing, distil this many steps from the unfactorized model (or --teacher)."},
    )
    factorize_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Also factorize the word embeddings as ALBERT does: a vocab x rank table, then rank -> hidden "
            "(plain SVD, rank chosen as for the Linear layers; not for embeddings tied to the lm_head)."
        },
    )

    def __post_init__(self):
        amounts = (("--rank", self.rank), ("--energy", self.energy), ("--parameter-ratio", self.parameter_ratio))
        given = [flag for flag, value in amounts if value is not None]
        if not given:
            raise UsageError("Say how much to keep: pass one of --rank, --energy or --parameter-ratio.")
        if len(given) > 1:
            raise UsageError(f"Pass only one of --rank, --energy and --parameter-ratio, not {' and '.join(given)}.")
        if self.rank is not None and self.rank < 1:
            raise UsageError(f"--rank must be at least 1, got {self.rank}.")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise UsageError(f"--energy is the fraction of singular-value energy kept, in (0, 1]; got {self.energy}.")
        if self.parameter_ratio is not None and not 0.0 < self.parameter_ratio < 1.0:
            raise UsageError(f"--parameter-ratio must be in (0, 1), got {self.parameter_ratio}.")
        if self.modules is not None:
            import re

            try:
                re.compile(self.modules)
            except re.error as err:
                raise UsageError(f"--modules '{self.modules}' is not a valid regular expression: {err}.") from None
        if not 0.0 < self.dampening < 1.0:
            raise UsageError(f"--dampening must be in (0, 1), got {self.dampening}.")
        if self.dampening != DEFAULT_DAMPENING and not self.whiten:
            raise UsageError("--dampening applies to --whiten only.")
        if self.calibration_samples < 1:
            raise UsageError(f"--calibration-samples must be at least 1, got {self.calibration_samples}.")
        if self.recovery_steps < 0:
            raise UsageError(f"--recovery-steps must be 0 or more, got {self.recovery_steps}.")

    @property
    def method(self) -> str:
        return "whitened-svd" if self.whiten else "svd"

    def to_dict(self) -> dict:
        return asdict(self)

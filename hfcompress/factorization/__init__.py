"""Low-rank factorization (`hfcompress factorize`) and `load_model` for the folders it writes.

`run_factorize` (the command, which pulls in the Trainer) is imported on first use, so `load_model` stays light.
"""

from .factorization_config import FactorizationConfig
from .layers import FactorizedEmbedding, FactorizedLinear
from .loading import is_factorized, load_model

__all__ = ["FactorizationConfig", "FactorizedEmbedding", "FactorizedLinear", "is_factorized", "load_model",
           "run_factorize"]  # fmt: skip


def __getattr__(name: str):
    if name == "run_factorize":
        from .run import run_factorize

        return run_factorize
    raise AttributeError(f"module 'hfcompress.factorization' has no attribute '{name}'")

from .factorization_config import FactorizationConfig
from .layers import FactorizedLinear
from .loading import is_factorized, load_model
from .run import run_factorize

__all__ = ["FactorizationConfig", "FactorizedLinear", "is_factorized", "load_model", "run_factorize"]

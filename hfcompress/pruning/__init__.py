from .callback import GradualMagnitudePruningCallback
from .pruning_config import PruningConfig
from .report import make_permanent, sparsity_report
from .run import TeacherArguments, run_prune
from .schedules import SCHEDULES

__all__ = [
    "SCHEDULES",
    "GradualMagnitudePruningCallback",
    "PruningConfig",
    "TeacherArguments",
    "make_permanent",
    "run_prune",
    "sparsity_report",
]

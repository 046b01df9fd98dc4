from .distillation_config import DistillationArguments
from .distillation_trainer import DistillationTrainer
from .run import run_distill
from .student import build_student_from_teacher, parse_student_layers

__all__ = [
    "DistillationArguments",
    "DistillationTrainer",
    "build_student_from_teacher",
    "parse_student_layers",
    "run_distill",
]

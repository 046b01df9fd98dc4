from .distillation_config import DistillationArguments
from .distillation_trainer import DistillationTrainer
from .run import run_distill
from .student import build_student_from_teacher, parse_student_layers
from .teacher_cache import TeacherCache, open_teacher_cache

__all__ = [
    "DistillationArguments",
    "DistillationTrainer",
    "TeacherCache",
    "build_student_from_teacher",
    "open_teacher_cache",
    "parse_student_layers",
    "run_distill",
]

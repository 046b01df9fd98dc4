"""hfcompress: make Hugging Face Transformers models smaller and faster without losing their accuracy.

Names are imported on first use, so `import hfcompress` stays light.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "DistillationArguments": "hfcompress.distillation",
    "DistillationTrainer": "hfcompress.distillation",
    "build_student_from_teacher": "hfcompress.distillation",
    "run_distill": "hfcompress.distillation",
    "run_finetune": "hfcompress.finetune",
    "GradualMagnitudePruningCallback": "hfcompress.pruning",
    "PruningConfig": "hfcompress.pruning",
    "run_prune": "hfcompress.pruning",
    "quantize": "hfcompress.quantization",
    "run_quantize": "hfcompress.quantization",
    "FactorizationConfig": "hfcompress.factorization",
    "run_factorize": "hfcompress.factorization",
    "load_model": "hfcompress.factorization",
    "OnnxDynamicInt8Config": "hfcompress.quantization",
    "OnnxStaticInt8Config": "hfcompress.quantization",
    "BnbInt8Config": "hfcompress.quantization",
    "BnbNf4Config": "hfcompress.quantization",
    "OrtSequenceClassifier": "hfcompress.quantization",
    "write_model_card": "hfcompress.cards",
    "push_folder": "hfcompress.hub",
    "ModelArguments": "hfcompress.arguments",
    "StudentArguments": "hfcompress.arguments",
    "DataArguments": "hfcompress.arguments",
    "FinetuneArguments": "hfcompress.arguments",
    "GLUE_TASKS": "hfcompress.data",
    "get_task": "hfcompress.data",
    "load_glue": "hfcompress.data",
    "compute_glue_metrics": "hfcompress.data",
    "evaluate_model": "hfcompress.evaluation",
    "Task": "hfcompress.tasks",
    "TaskType": "hfcompress.tasks",
    "GlueTaskConfig": "hfcompress.tasks",
    "ClassificationTask": "hfcompress.tasks",
    "CausalLMTask": "hfcompress.tasks",
    "train_bpe_tokenizer": "hfcompress.data.bpe",
    "HfcompressError": "hfcompress.errors",
    "UsageError": "hfcompress.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hfcompress' has no attribute '{name}'")

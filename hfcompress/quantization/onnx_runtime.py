"""ONNX Runtime on CPU: transformer graph fusions, dynamic or static int8, and a small loader for the result.

The output folder is laid out like optimum's exports (`model.onnx`, `config.json`, tokenizer files), so
`optimum.onnxruntime.ORTModelForSequenceClassification.from_pretrained(folder)` can load it too.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import HfcompressError
from ..measure import dummy_inputs, median_latency_ms
from .configs import OnnxConfig, OnnxStaticInt8Config
from .onnx_export import (
    DEFAULT_CHECK_TEXTS,
    check_agreement,
    export_onnx,
    input_names,
    load_for_export,
    max_difference,
    prediction_agreement,
    tokenize_batches,
    torch_logits,
)
from .partial import check_nodes_found, missing_nodes, nodes_for_modules, onnx_weight_nodes

logger = logging.getLogger("hfcompress")

MODEL_FILE = "model.onnx"
# Encoder families whose graphs ONNX Runtime's BERT optimizer knows how to fuse (optimum maps them the same way).
BERT_LIKE = {
    "albert",
    "bert",
    "camembert",
    "distilbert",
    "electra",
    "ernie",
    "mpnet",
    "roberta",
    "xlm-roberta",
}
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "LayerNormalization", "Gelu", "FastGelu", "BiasGelu")  # fmt: skip
# Static int8 quantizes the matmuls and embeddings; the pooler and classifier (Gemm) stay in fp32, as they do
# with dynamic int8 and bitsandbytes. Quantizing Add/Gemm too broke graphs whose biases share one initializer.
STATIC_OPS = ("MatMul", "EmbedLayerNormalization", "Gather")
# Fused contrib ops hide tensor types from ONNX shape inference; the quantizer then assumes float.
_QUANT_OPTIONS = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT
_LARGE_MODEL_BYTES = 1_800_000_000  # above ~2 GB protobuf cannot hold the graph; weights go to model.onnx_data


@contextlib.contextmanager
def quiet_logs(level: int):
    """Silence log records at `level` and below from every logger (ONNX Runtime's tools log to many)."""
    previous = logging.root.manager.disable
    logging.disable(max(level, previous))
    try:
        yield
    finally:
        logging.disable(previous)


def make_session(path: str | Path, threads: int | None = None):
    """A CPU InferenceSession using as many threads as PyTorch does, so latencies compare fairly."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_logits(session, batches) -> list[np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    return [session.run(None, _feed(batch, names))[0] for batch in batches]


def _feed(batch: dict, names: list[str]) -> dict[str, np.ndarray]:
    """Numpy int64 inputs for the session; token_type_ids default to zeros when the tokenizer gives none."""
    feed = {}
    for name in names:
        value = batch.get(name)
        if value is None and name == "token_type_ids":
            value = np.zeros_like(np.asarray(batch["input_ids"]))
        if value is None:
            raise HfcompressError(f"The ONNX model needs input '{name}', which the batch does not have.")
        feed[name] = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        feed[name] = feed[name].astype(np.int64)
    return feed


def fusion_settings(config) -> tuple[str, int, int] | None:
    """(model_type, heads, hidden size) for ONNX Runtime's optimizer, or None when it has no fusions for it."""
    if config.model_type not in BERT_LIKE:
        return None
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    return "bert", int(heads), int(hidden)


def optimize_graph(source: Path, target: Path, config, fuse_attention: bool = True) -> dict[str, int]:
    """Fuse attention / LayerNorm / GELU where the graph allows; returns how many of each fused op exist.

    `fuse_attention=False` keeps the query / key / value projections as separate MatMuls (so one can stay fp32).
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    settings = fusion_settings(config)
    if settings is None:
        logger.info(
            "ONNX Runtime has no transformer fusions for '%s'; quantizing the graph as exported.", config.model_type
        )
        shutil.copyfile(source, target)
        return {}
    model_type, heads, hidden = settings
    with quiet_logs(logging.INFO):  # each fusion logs what it did, under module-level logger names
        options = FusionOptions(model_type)
        options.enable_attention = fuse_attention
        optimized = optimizer.optimize_model(str(source), model_type=model_type, num_heads=heads, hidden_size=hidden,
                                             optimization_options=options)  # fmt: skip
        counts = optimized.get_fused_operator_statistics()
        optimized.save_model_to_file(str(target), use_external_data_format=_is_large(source))
    return {op: int(counts.get(op, 0)) for op in FUSED_OPS if counts.get(op)}


class CalibrationReader:
    """Feeds ONNX Runtime's calibrator the prepared inputs, one example at a time."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self._iter = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.feeds)


def calibration_feeds(tokenizer, texts, names: list[str], max_length: int) -> list[dict[str, np.ndarray]]:
    """One feed per example, all padded to the longest: the histogram calibrators need one shape."""
    (batch,) = tokenize_batches(tokenizer, texts, names, max_length, batch_size=len(texts))
    feed = _feed(batch, names)
    return [{name: value[i : i + 1] for name, value in feed.items()} for i in range(len(texts))]


def quantize_graph(source: Path, target: Path, config: OnnxConfig, feeds: list | None = None,
                   exclude_nodes: list[str] | None = None) -> None:  # fmt: skip
    """Quantize `source` into `target`, leaving `exclude_nodes` in fp32; static int8 calibrates on `feeds` once
    per source graph (the ranges are kept next to it for later calls)."""
    # The quantizer logs every tensor, and suggests a pre-processing step that only the static path needs.
    with quiet_logs(logging.WARNING):
        _quantize_graph(source, target, config, feeds, list(exclude_nodes or []))


def _quantize_graph(source: Path, target: Path, config: OnnxConfig, feeds: list | None, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    large = _is_large(source)
    if not isinstance(config, OnnxStaticInt8Config):
        quantize_dynamic(source, target, per_channel=config.per_channel, weight_type=QuantType.QInt8,
                         nodes_to_exclude=exclude, use_external_data_format=large,
                         extra_options=dict(_QUANT_OPTIONS))  # fmt: skip
        return
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Symbolic shape inference knows the fused contrib ops, so the calibrator sees every float tensor.
    inferred = source.with_name("inferred.onnx")
    ranges = source.with_name("calibration.json")
    if not (inferred.is_file() and ranges.is_file()):
        quant_pre_process(source, inferred, skip_optimization=True, auto_merge=True, save_as_external_data=large)
        ranges = calibrate(inferred, config, feeds, large)
    # QOperator (QLinearMatMul, QEmbedLayerNormalization) with uint8 activations: the most accurate and fastest
    # of the combinations measured on MiniLM / SST-2 (QDQ lost 0.7 points and ran slower).
    quantize_static(inferred, target, None, quant_format=QuantFormat.QOperator, op_types_to_quantize=list(STATIC_OPS),
                    per_channel=config.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=_calibration_method(config), use_external_data_format=large,
                    nodes_to_exclude=exclude, extra_options=dict(_QUANT_OPTIONS),
                    calibration_cache_path=ranges)  # fmt: skip


def _calibration_method(config: OnnxStaticInt8Config):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[config.calibration_method]  # fmt: skip


def calibrate(model_path: Path, config: OnnxStaticInt8Config, feeds: list, large: bool = False) -> Path:
    """Activation ranges from `feeds`, saved as ONNX Runtime's calibration cache next to `model_path`.

    Run here rather than inside `quantize_static` because that one builds the entropy calibrator with 128
    histogram bins for 128 quantized bins, which leaves a single candidate threshold: plain min/max.
    """
    import io

    from onnxruntime.quantization import CalibrationDataReader, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    options = {
        "minmax": {},
        "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
        "percentile": {"num_bins": 2048, "percentile": config.percentile, "symmetric": True},
    }[config.calibration_method]
    reader = type("Reader", (CalibrationReader, CalibrationDataReader), {})(feeds)
    op_types = list(STATIC_OPS)
    augmented = model_path.with_name("augmented.onnx")
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
        calibrator = create_calibrator(model_path, op_types, augmented_model_path=str(augmented),
                                       calibrate_method=_calibration_method(config),
                                       use_external_data_format=large, extra_options=options)  # fmt: skip
        calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
    cache = model_path.with_name("calibration.json")
    save_tensors_data(ranges, cache)
    return cache


def quantize_onnx(
    model_dir: str | Path,
    config: OnnxConfig,
    output_dir: str | Path,
    tokenizer,
    calibration_texts=None,
    check_texts=None,
    max_length: int = 128,
    name: str | None = None,
) -> dict:
    """Export, check, fuse, check again, quantize and write an optimum-style folder; returns what was done."""
    name = name or str(model_dir)
    model = load_for_export(model_dir)
    names = input_names(model, tokenizer)
    check_batches = tokenize_batches(tokenizer, check_texts or DEFAULT_CHECK_TEXTS, names, max_length)
    reference = torch_logits(model, check_batches)
    with tempfile.TemporaryDirectory(prefix="hfcompress-onnx-") as tmp:
        tmp = Path(tmp)
        exported = export_onnx(model, names, tmp / "exported.onnx", config.opset, name)
        checks = {"tolerance": config.export_tolerance, "examples": sum(len(b["input_ids"]) for b in check_batches)}
        exported_logits = session_logits(make_session(exported), check_batches)
        checks["export_max_abs_diff"] = check_agreement(
            reference, exported_logits, config.export_tolerance, "ONNX Runtime's logits for the exported graph"
        )
        fused = {}
        graph = exported
        linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        if config.optimize:
            graph = tmp / "optimized.onnx"
            fused = optimize_graph(exported, graph, model.config)
            if missing_nodes(onnx_weight_nodes(graph), config.excluded_modules, linear):
                logger.info("Keeping attention unfused so the excluded query/key/value layers can stay in fp32.")
                fused = optimize_graph(exported, graph, model.config, fuse_attention=False)
            checks["optimized_max_abs_diff"] = check_agreement(
                reference, session_logits(make_session(graph), check_batches), config.export_tolerance,
                "ONNX Runtime's logits for the fused graph",
            )  # fmt: skip
        feeds = None
        if isinstance(config, OnnxStaticInt8Config):
            if not calibration_texts:
                raise HfcompressError("Static int8 needs calibration texts (examples of the task's train split).")
            rows = list(calibration_texts)[: config.calibration_samples]
            feeds = calibration_feeds(tokenizer, rows, names, max_length)
        quantized = tmp / "quantized" / MODEL_FILE
        quantized.parent.mkdir()
        weight_nodes = onnx_weight_nodes(graph)
        check_nodes_found(weight_nodes, config.excluded_modules, linear)
        excluded_nodes = nodes_for_modules(weight_nodes, config.excluded_modules)
        quantize_graph(graph, quantized, config, feeds, excluded_nodes)
        int8_logits = session_logits(make_session(quantized), check_batches)
        checks["int8_max_abs_diff"] = max_difference(reference, int8_logits)
        checks["int8_prediction_agreement"] = prediction_agreement(reference, int8_logits)

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        for file in quantized.parent.iterdir():
            shutil.copyfile(file, output_dir / file.name)
    model.config.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return {
        "inputs": names,
        "exporter": f"torch.onnx.export(dynamo=False), opset {config.opset}, eager attention",
        "fused_operators": fused,
        "calibration_samples": len(feeds) if feeds else 0,
        "kept_in_full_precision": excluded_nodes,
        "checks": checks,
    }


def _is_large(path: Path) -> bool:
    return sum(f.stat().st_size for f in path.parent.glob(path.name + "*")) > _LARGE_MODEL_BYTES


class OrtSequenceClassifier:
    """A quantized (or fp32) ONNX sequence classifier on CPU: tokenized batch in, logits out.

    >>> clf = OrtSequenceClassifier.from_pretrained("out/sst2-int8")
    >>> clf(tokenizer(["great film"], return_tensors="np"))  # array of shape (1, num_labels)
    """

    def __init__(self, session, config, directory: Path | None = None):
        self.session = session
        self.config = config
        self.directory = directory
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def from_pretrained(cls, directory: str | Path, threads: int | None = None) -> OrtSequenceClassifier:
        from transformers import AutoConfig

        directory = Path(directory)
        if not (directory / MODEL_FILE).is_file():
            raise HfcompressError(f"'{directory}' holds no {MODEL_FILE}, so it is not an ONNX model folder.")
        return cls(make_session(directory / MODEL_FILE, threads), AutoConfig.from_pretrained(directory), directory)

    def __call__(self, batch: dict) -> np.ndarray:
        return self.session.run(None, _feed(batch, self.input_names))[0]

    def latency_ms(self, batch_sizes=(1, 32), seq_len: int = 128, repeats: int = 10, warmup: int = 2) -> dict:
        """CPU latency measured exactly like `hfcompress.measure.torch_latency_ms` (same inputs and repeats)."""
        results = {}
        for batch in batch_sizes:
            feed = _feed(dummy_inputs(self.config, batch, seq_len), self.input_names)

            def run(feed=feed):
                self.session.run(None, feed)

            n = repeats if batch <= 8 else max(3, repeats // 2)
            results[f"batch_{batch}"] = round(median_latency_ms(run, warmup=warmup, repeats=n), 3)
        return results

    def initializer_bytes(self) -> int:
        """Bytes of the graph's weights (initializers): what the model holds in memory besides activations."""
        import onnx

        model = onnx.load(str(self.directory / MODEL_FILE), load_external_data=True)
        return sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer)

"""hfcompress demo: the whole job on an embedded default, offline.

Runs a three-step recipe on the packaged MiniLM (6 layers): fine-tune it on a sentiment task, distil it into a
3-layer student built from its layers, and quantize the student to ONNX Runtime int8; then benchmarks the three
side by side (metric, size, latency interleaved over rounds) and draws the charts. Uses real SST-2 from the Hub
when it is reachable, else a GLUE-format sentiment task that hfcompress writes itself, half of whose sentences
need several steps of composition (the majority of three clauses, double negation, unmet wishes), so that the
teacher is not perfect and what compression costs shows.
"""

from dataclasses import dataclass, field
from pathlib import Path

from ..data import write_sentiment_task
from ..models import _hub_reachable
from ..pipeline import check_output_dir
from .common import parse_dataclasses

RECIPE = """\
# The demo: fine-tune MiniLM, distil it to 3 layers, quantize the student to ONNX Runtime int8 (CPU).
task: sst2
model: minilm
learning_rate: 1.0e-4
per_device_train_batch_size: 32
warmup_steps: 0.1
logging_steps: 20
seed: 42
steps:
  - finetune: {}
  - distill: {student_layers: "3", temperature: 2.0, distill_weight: 0.7, hard_label_weight: 0.3}
  - quantize: {method: onnx-int8-dynamic}
"""


@dataclass
class DemoArguments:
    output_dir: str = field(default="runs/demo", metadata={"help": "Where the data, recipe and benchmark go."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Reuse a non-empty output directory (finished steps are kept)."}
    )
    train_samples: int = field(default=2000, metadata={"help": "Training examples to use."})
    epochs: float = field(default=2.0, metadata={"help": "Epochs for fine-tuning the teacher and for distillation."})
    rounds: int = field(default=3, metadata={"help": "Interleaved latency rounds of the final benchmark."})
    latency_runs: int = field(default=10, metadata={"help": "Timed calls per latency measurement (0: no latency)."})


def run(argv: list[str]) -> int:
    from ..benchmark import run_benchmark
    from ..recipes import run_recipe
    from ..tasks import GlueTaskConfig

    (demo,) = parse_dataclasses(argv, (DemoArguments,), "demo", __doc__)
    out = check_output_dir(demo.output_dir, demo.overwrite_output_dir)
    options = {"num_train_epochs": demo.epochs, "max_train_samples": demo.train_samples,
               "latency_runs": demo.latency_runs}  # fmt: skip
    if _hub_reachable():
        print("The Hugging Face Hub is reachable: using real SST-2 (nyu-mll/glue).")
    else:
        options["data_dir"] = str(_generated_data(out / "data", demo.train_samples))
        print(f"The Hugging Face Hub is unreachable: using a generated sentiment task in {options['data_dir']} "
              "(majorities of three clauses, double negations and unmet wishes: hard enough that compression costs "
              "accuracy).")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.yaml").write_text(RECIPE, encoding="utf-8")
    record = run_recipe(str(out / "demo.yaml"), out / "recipe", options)
    folders = [str(out / "recipe" / name) for name in ("01-finetune", "02-distill", "03-quantize")]
    task = GlueTaskConfig(task="sst2", data_dir=options.get("data_dir"))
    run_benchmark(folders, task, out / "benchmark", rounds=demo.rounds, repeats=max(demo.latency_runs, 1),
                  overwrite=True)  # fmt: skip
    print(f"Teacher: {folders[0]}; student: {folders[1]}; int8 student: {record['final']}.")
    print(f"Charts: {out / 'benchmark' / 'metric_vs_latency.png'} and metric_vs_size.png.")
    return 0


def _generated_data(folder: Path, train_samples: int) -> Path:
    """The generated task, written only when missing or different, so a rerun's finished steps stay valid."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_sentiment_task(Path(tmp), n_train=train_samples, n_dev=400, hard=True) / "sst2"
        target = folder / "sst2"
        same = target.is_dir() and all(
            (target / f.name).is_file() and (target / f.name).read_bytes() == f.read_bytes() for f in fresh.iterdir()
        )
        if not same:
            write_sentiment_task(folder, n_train=train_samples, n_dev=400, hard=True)
    return folder

"""hfcompress demo: the whole job on an embedded default, offline.

Fine-tunes the packaged MiniLM (6 layers) on a sentiment task, distils it into a 3-layer student built
from its layers, evaluates both and prints the comparison. Uses real SST-2 from the Hub when it is
reachable, else a GLUE-format sentiment task that hfcompress writes itself.
"""

from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import DataArguments, ModelArguments, StudentArguments
from ..data import write_sentiment_task
from ..distillation import DistillationArguments, run_distill
from ..models import _hub_reachable
from ..pipeline import check_output_dir
from .common import command_line, parse_dataclasses


@dataclass
class DemoArguments:
    output_dir: str = field(default="runs/demo", metadata={"help": "Where the data, teacher and student go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Reuse a non-empty output directory."})
    train_samples: int = field(default=2000, metadata={"help": "Training examples to use."})
    epochs: float = field(default=2.0, metadata={"help": "Epochs for fine-tuning the teacher and for distillation."})


def run(argv: list[str]) -> int:
    (demo,) = parse_dataclasses(argv, (DemoArguments,), "demo", __doc__)
    out = check_output_dir(demo.output_dir, demo.overwrite_output_dir)
    if _hub_reachable():
        print("The Hugging Face Hub is reachable: using real SST-2 (nyu-mll/glue).")
        data_dir = None
    else:
        data_dir = write_sentiment_task(Path(out) / "data", n_train=demo.train_samples, n_dev=400)
        print(f"The Hugging Face Hub is unreachable: using a generated sentiment task in {data_dir}.")
    args = DistillationArguments(
        output_dir=str(Path(out) / "student"),
        overwrite_output_dir=demo.overwrite_output_dir,
        num_train_epochs=demo.epochs,
        learning_rate=1e-4,
        per_device_train_batch_size=32,
        warmup_steps=0.1,
        logging_steps=20,
        temperature=2.0,
        distill_weight=0.7,
        hard_label_weight=0.3,
        seed=42,
    )
    run_distill(
        ModelArguments(model="minilm"),
        StudentArguments(student_layers="3"),
        DataArguments(task="sst2", data_dir=str(data_dir) if data_dir else None, max_train_samples=demo.train_samples),
        args,
        command_line(argv, "demo"),
    )
    print(f"Student saved in {args.output_dir}; the fine-tuned teacher in {Path(args.output_dir) / 'teacher'}.")
    return 0

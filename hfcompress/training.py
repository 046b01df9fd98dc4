"""Every training run goes through `run_training`: resume for real, stop on divergence, say where to resume.

- `--resume_from_checkpoint PATH|true` is resolved before any long work (true: the newest checkpoint-N in the
  output folder) and passed to `trainer.train`; the callbacks read the same folder (`resume_folder`).
- A non-finite loss or weight stops training with one sentence naming the step and the last good checkpoint.
  The check runs before the Trainer saves, so a diverged checkpoint is never written, and no result either.
- SIGTERM (a scheduler's kill) and Ctrl-C stop with one line saying where the last checkpoint is.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

import torch
from transformers import TrainerCallback

from .errors import HfcompressError, UsageError


class TrainingDiverged(HfcompressError):
    exit_code = 3


class TrainingStopped(HfcompressError):
    exit_code = 130


def resolve_resume(args) -> str | None:
    """The checkpoint folder to resume from, checked, or None; `args.resume_from_checkpoint` is set to it."""
    value = getattr(args, "resume_from_checkpoint", None)
    if not value:
        return None
    if str(value).lower() == "true":
        from .outputs import staging_dir

        folder = Path(args.output_dir)
        last = last_checkpoint(staging_dir(folder)) or last_checkpoint(folder)
        if last is None:
            raise UsageError(
                f"--resume_from_checkpoint true found no checkpoint-N folder in '{staging_dir(folder)}' (an "
                f"unfinished run's) or '{folder}'."
            )
        value = last
    if not (Path(value) / "trainer_state.json").is_file():
        raise UsageError(
            f"'{value}' is not a Trainer checkpoint (it has no trainer_state.json); pass a checkpoint-N folder "
            "written with --save_strategy, or true for the newest one in the output folder."
        )
    args.resume_from_checkpoint = str(value)
    return str(value)


def resume_folder(args, state) -> Path:
    """The checkpoint a resumed run started from: the one asked for, else output_dir/checkpoint-N."""
    resumed = getattr(args, "resume_from_checkpoint", None)
    if resumed and str(resumed).lower() != "true":
        return Path(resumed)
    return Path(args.output_dir) / f"checkpoint-{state.global_step}"


def last_checkpoint(output_dir) -> str | None:
    """The newest complete checkpoint-N folder (a run killed while saving leaves one without trainer_state.json)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = [p for p in folder.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")), reverse=True):
        if (path / "trainer_state.json").is_file():
            return str(path)
    return None


def _where(args) -> str:
    last = last_checkpoint(args.output_dir)
    if last:
        return f"the last checkpoint is {last}; rerun with --resume_from_checkpoint {last}"
    return "no checkpoint was saved (pass --save_strategy steps --save_steps N to keep some)"


class DivergenceGuard(TrainerCallback):
    """Stops training at the first non-finite loss or weight, before that step's checkpoint is saved."""

    def __init__(self, model_getter):
        self.model_getter = model_getter

    def _bad_weights(self) -> str | None:
        return first_non_finite(self.model_getter())

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(
                f"Training diverged at step {state.global_step}: the loss is {loss}; nothing was saved as a result "
                f"and {_where(args)} (try a lower --learning_rate)."
            )

    def on_step_end(self, args, state, control, **kwargs):
        bad = self._bad_weights()
        if bad:
            raise TrainingDiverged(
                f"Training diverged at step {state.global_step}: {bad} holds NaN or infinite values; nothing was "
                f"saved as a result and {_where(args)} (try a lower --learning_rate)."
            )


@torch.no_grad()
def first_non_finite(model) -> str | None:
    """The name of the first parameter holding NaN or inf, else None.

    One reduction per tensor (an fp32 norm is non-finite exactly when some entry is, barring overflow of huge
    finite weights, which is checked entry by entry) and one device sync for the whole model.
    """
    params = [(n, p) for n, p in model.named_parameters() if p.dtype.is_floating_point and p.numel()]
    if not params:
        return None
    norms = torch.stack([torch.linalg.vector_norm(p.detach(), dtype=torch.float32).to(params[0][1].device)
                         for _, p in params])  # fmt: skip
    if torch.isfinite(norms).all():
        return None
    for (name, param), norm in zip(params, norms.tolist()):
        if not math.isfinite(norm) and not torch.isfinite(param).all():
            return name
    return None


def check_finite(model, name: str) -> None:
    """Refuse a model with NaN or infinite weights (a diverged run's output) in one sentence."""
    bad = first_non_finite(model)
    if bad:
        raise UsageError(f"'{name}' has NaN or infinite weights (first: {bad}); it is not a usable model.")


def is_main_process(args) -> bool:
    """Only the main process saves, measures, writes reports and cards, and pushes."""
    return getattr(args, "process_index", 0) == 0


def check_processes(args, trainer=None) -> None:
    """Refuse a multi-process launch in which each process would silently train alone, and a sharded engine that
    accelerate would silently drop: on CPU it runs plain DDP for FSDP and nothing for DeepSpeed. Without `trainer`
    (before any work) CPU training is taken as the sign; with it, whether its accelerator kept the engine."""
    import os

    flag = "--fsdp" if getattr(args, "fsdp", None) else "--deepspeed" if getattr(args, "deepspeed", None) else None
    if flag and (_on_cpu(args) if trainer is None else not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled)):
        raise UsageError(
            f"{flag} needs GPUs: on CPU accelerate silently trains without it (FSDP becomes plain DDP, DeepSpeed is "
            f"switched off); drop {flag}, as with --use_cpu several processes already train together over gloo."
        )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise UsageError(
            f"Launched as {launched} processes, but the Trainer sees {args.world_size}: without a GPU per process "
            "each would train alone on the whole data; on CPU pass --use_cpu so they train together over gloo."
        )


def _unshard(trainer) -> None:
    """After FSDP2 training, every process gathers the full model, so the main one can save and measure it
    alone; callbacks that hold modules of the sharded model (`rebind`) move to the gathered one."""
    from .sharding import gathered_model, is_fsdp2_model

    if not is_fsdp2_model(trainer.model):
        return
    trainer.model = trainer.model_wrapped = gathered_model(trainer.model)
    for callback in trainer.callback_handler.callbacks:
        if hasattr(callback, "rebind"):
            callback.rebind(trainer.model)


def _on_cpu(args) -> bool:
    """Training would run on CPU (asked, or no accelerator), read without setting up devices."""
    if getattr(args, "use_cpu", False):
        return True
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return not accelerator.is_available()
    return not torch.cuda.is_available()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_training(trainer, args) -> dict:
    """`trainer.train()` with resume, the divergence guard and signal handling; returns what the report records."""
    resumed = resolve_resume(args)
    resumed_at = _step_of(resumed) if resumed else None  # read now: --save_total_limit may delete it while training
    check_processes(args, trainer)
    trainer.add_callback(DivergenceGuard(lambda: trainer.model))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
    try:
        trainer.train(resume_from_checkpoint=resumed)
    except KeyboardInterrupt:
        _close_progress_bars(trainer)
        raise TrainingStopped(f"Stopped at step {trainer.state.global_step}: {_where(args)}.") from None
    except BaseException:
        _close_progress_bars(trainer)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _unshard(trainer)
    info = {"steps_done": trainer.state.global_step, "epochs_done": round(trainer.state.epoch or 0.0, 4),
            "processes": args.world_size}  # fmt: skip
    if resumed:
        info["resumed_from"] = resumed
        info["resumed_at_step"] = resumed_at
    return info


def _close_progress_bars(trainer) -> None:
    """End the Trainer's progress bar line, so the one-line error that follows starts on a line of its own."""
    for callback in trainer.callback_handler.callbacks:
        for name in ("training_bar", "prediction_bar"):
            bar = getattr(callback, name, None)
            if bar is not None:
                bar.close()
                setattr(callback, name, None)


def _step_of(folder: str) -> int:
    import json

    return int(json.loads((Path(folder) / "trainer_state.json").read_text()).get("global_step", 0))


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

"""Early stopping on the task's own score (held-out perplexity, dev accuracy), keeping the best epoch's weights.

At the end of each epoch the model is evaluated with the task's metric on the validation data. An improvement
saves the weights (safetensors) to OUT/.best-model; after `patience` epochs without one, training stops; at the
end the best weights are loaded back, so the saved model is the best epoch's.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback

logger = logging.getLogger("hfcompress")
BEST_DIR = ".best-model"


class TaskScoreEarlyStopping(TrainerCallback):
    def __init__(self, task, tokenizer, splits, max_length: int, patience: int, output_dir: str | Path):
        self.task, self.tokenizer, self.splits, self.max_length = task, tokenizer, splits, max_length
        self.patience = patience
        self.best_dir = Path(output_dir) / BEST_DIR
        self.best: float | None = None
        self.best_epoch: float | None = None
        self.bad_epochs = 0
        self.history: list[dict] = []

    def _better(self, score: float) -> bool:
        if self.best is None:
            return True
        return score < self.best if self.task.lower_is_better else score > self.best

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        was_training = model.training
        score = self.task.score(self.task.evaluate(model, self.tokenizer, self.splits, self.max_length))
        model.train(was_training)
        if not math.isfinite(score):
            raise FloatingPointError(f"The held-out {self.task.score_name} is {score} after epoch {state.epoch:g}.")
        self.history.append({"epoch": round(state.epoch, 3), "step": state.global_step, self.task.score_name: score})
        logger.info("Epoch %g: held-out %s %.4f", state.epoch, self.task.score_name, score)
        if self._better(score):
            self.best, self.best_epoch, self.bad_epochs = score, round(state.epoch, 3), 0
            if state.is_world_process_zero:
                model.save_pretrained(self.best_dir, safe_serialization=True)
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                logger.info("No improvement for %d epoch(s): stopping early.", self.bad_epochs)
                control.should_training_stop = True
        return control

    @torch.no_grad()
    def restore(self, model) -> dict:
        """Load the best epoch's weights into `model`, remove the copy, and return what happened."""
        from safetensors.torch import load_file

        files = sorted(self.best_dir.glob("*.safetensors"))
        if files:
            state = {}
            for file in files:
                state.update(load_file(file))
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected:
                raise RuntimeError(f"Best-epoch weights have unexpected keys: {unexpected[:3]}")
            shutil.rmtree(self.best_dir, ignore_errors=True)
        return {"patience": self.patience, "best_epoch": self.best_epoch, f"best_{self.task.score_name}": self.best,
                "history": self.history}  # fmt: skip

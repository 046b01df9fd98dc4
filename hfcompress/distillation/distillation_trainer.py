"""A `transformers.Trainer` that trains a student to match a frozen teacher."""

from __future__ import annotations

import inspect
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback

from ..architecture import hidden_size, num_layers
from ..errors import UsageError
from ..regularization import L1Regularization
from ..sharding import fsdp_version, prepare_teacher
from . import losses
from .distillation_config import DistillationArguments, parse_layer_map
from .teacher_cache import TeacherCache, check_cache_settings, open_teacher_cache
from .teacher_placement import cast_teacher, placement, teacher_dtype


def default_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """Student layer i -> evenly spaced teacher layer, last onto last (12 -> 4 gives 2, 5, 8, 11)."""
    step = teacher_layers / student_layers
    return {i: int(round((i + 1) * step)) - 1 for i in range(student_layers)}


def _forward_keys(model: nn.Module) -> set[str] | None:
    params = inspect.signature(model.forward).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None  # accepts anything
    return set(params)


class DistillationTrainer(L1Regularization, Trainer):
    """Distil `teacher` into `model` (the student) with the losses weighted in `DistillationArguments`.

    The teacher is frozen, kept in eval mode, run under no_grad, cast to `args.teacher_dtype` (bfloat16 on CUDA by
    default; teacher_placement.py), placed on the student's device by the Trainer's accelerator, and is not a
    submodule of the student, so it never enters a checkpoint. `teacher_placement` records its device and dtype.
    `args.l1_weight` adds an L1 penalty on the student's prunable weights to the training loss (regularization.py).

    With a `teacher_cache` (or `args.teacher_cache`, opened here from the train dataset and collator), training
    batches take the teacher's outputs from the cache and the teacher never runs on them; `teacher` may then be
    None, unless held-out batches (evaluation) need it.
    """

    # Classifiers: compute_loss returns per-batch means, so the Trainer divides them by the accumulation steps.
    # Causal LMs: token losses are sums over real tokens divided by `num_items_in_batch` (the real tokens of the
    # whole accumulated batch), so they are already scaled; compute_loss sets this per call.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        teacher: PreTrainedModel | None,
        args: DistillationArguments,
        layer_map: dict[int, int] | None = None,
        teacher_cache: TeacherCache | None = None,
        **kwargs,
    ):
        if not isinstance(args, DistillationArguments):
            raise UsageError("DistillationTrainer needs DistillationArguments, not plain TrainingArguments.")
        if teacher is None and teacher_cache is None:
            raise UsageError("DistillationTrainer needs a teacher model, or a teacher_cache of its outputs.")
        if teacher is not None:
            check_compatible(teacher, model)
        self.token_level = is_causal_lm(model)
        if teacher_cache is not None or args.teacher_cache:
            check_cache_settings(args, self.token_level)
        if args.loss_chunk_tokens and self.token_level:
            check_chunkable(model, "student")
            if teacher is not None:
                check_chunkable(teacher, "teacher")
        super().__init__(model=model, args=args, **kwargs)
        if args.loss_chunk_tokens and self.token_level and fsdp_version(self.accelerator):
            raise UsageError("--loss-chunk-tokens runs lm_head outside the model's forward, where FSDP holds only "
                             "shards of it; drop --loss-chunk-tokens under FSDP.")  # fmt: skip
        if teacher is not None:  # once, before a teacher cache is built from it and before it is placed
            sharded = fsdp_version(self.accelerator) is not None
            teacher = cast_teacher(teacher, teacher_dtype(args, self.accelerator.device, sharded))
        if teacher_cache is None and args.teacher_cache:
            if self.train_dataset is None:
                raise UsageError("--teacher-cache caches the teacher's outputs on the train dataset; pass one.")
            with args.main_process_first(desc="teacher cache"):
                teacher_cache = open_teacher_cache(args.teacher_cache, teacher, self.processing_class,
                                                   self.train_dataset, self.data_collator, None, args)  # fmt: skip
        if teacher_cache is not None:
            teacher_cache.check_student(model)
        self.teacher_cache = teacher_cache
        self.teacher = None
        if teacher is not None:
            if args.attention_weight > 0:
                for m in (self.model, teacher):
                    m.set_attn_implementation("eager")  # fused attention kernels return no attention maps
            # Frozen, in eval mode, never in the optimizer; sharded like the student under FSDP (sharding.py).
            self.teacher = prepare_teacher(teacher, self.accelerator)
        # Where the live teacher runs and in which dtype, for the report (None when a cache stands in for it).
        self.teacher_placement = placement(self.teacher)
        self.layer_map = parse_layer_map(args.layer_map) or layer_map
        if self.layer_map is None:  # without a teacher there are no hidden-state losses to map
            self.layer_map = (
                default_layer_map(num_layers(model.config), num_layers(teacher.config)) if teacher is not None else {}
            )
        self.hidden_projection = None
        if teacher is not None:
            self._check_layer_map(model, teacher)
            self.hidden_projection = self._make_projection(model, teacher)
        if self.hidden_projection is not None:
            self.add_callback(ProjectionCallback(self.hidden_projection))
        self._student_keys = _forward_keys(self.accelerator.unwrap_model(self.model))
        self._teacher_keys = _forward_keys(teacher) if teacher is not None else None
        self._loss_sums: dict[str, float] = defaultdict(float)
        self._loss_count = 0

    def _check_layer_map(self, student, teacher):
        s_layers, t_layers = num_layers(student.config), num_layers(teacher.config)
        for s, t in self.layer_map.items():
            if not (0 <= s < s_layers and 0 <= t < t_layers):
                raise UsageError(
                    f"Layer map pair {s}:{t} is out of range for a {s_layers}-layer student and a "
                    f"{t_layers}-layer teacher."
                )

    def _make_projection(self, student, teacher) -> nn.Module | None:
        """A learned map from student to teacher width when the hidden losses compare unequal widths."""
        s_dim, t_dim = hidden_size(student.config), hidden_size(teacher.config)
        if s_dim == t_dim or (self.args.hidden_weight == 0 and self.args.cosine_weight == 0):
            return None
        projection = nn.Linear(s_dim, t_dim).to(self.args.device)
        if self.accelerator.num_processes > 1:  # every rank starts from rank 0's initialisation
            for p in projection.parameters():
                torch.distributed.broadcast(p.data, src=0)
        return projection

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        # FSDP2 swaps the optimizer's parameters for the student's shards and fails on any it cannot map:
        # there, the projection joins in create_scheduler, after the accelerator has prepared the optimizer.
        if fsdp_version(self.accelerator) != 2:
            self._add_projection_group(optimizer)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        self._add_projection_group(optimizer or self.optimizer)
        return super().create_scheduler(num_training_steps, optimizer)

    def _add_projection_group(self, optimizer) -> None:
        if optimizer is None or self.hidden_projection is None:
            return
        params = list(self.hidden_projection.parameters())
        if not any(p is q for g in optimizer.param_groups for p in g["params"] for q in params):
            # The projection trains with the student but is not part of it, so it is not saved with it.
            optimizer.add_param_group({"params": params, "weight_decay": 0.0})

    @staticmethod
    def _select(inputs: dict, keys: set[str] | None) -> dict:
        return {k: v for k, v in inputs.items() if keys is None or k in keys}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args = self.args
        want_hidden = args.hidden_weight > 0 or args.cosine_weight > 0
        want_attention = args.attention_weight > 0
        extra = {"output_hidden_states": want_hidden, "output_attentions": want_attention}
        chunked = self.token_level and args.loss_chunk_tokens > 0
        if chunked:  # the models compute one position's logits; the losses take lm_head over chunks of tokens
            extra.update(output_hidden_states=True, logits_to_keep=1)
        labels = inputs.get("labels")
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}

        student_out = model(**self._select(model_inputs, self._student_keys), **extra)
        teacher_out = self._teacher_outputs(model_inputs, extra, student_out.logits, model.training)

        if self.token_level:
            head = self.accelerator.unwrap_model(model).get_output_embeddings() if chunked else None
            parts = self.token_losses(student_out, teacher_out, labels, inputs.get("attention_mask"),
                                      num_items_in_batch, head)  # fmt: skip
        else:
            parts = self.distillation_losses(student_out, teacher_out, labels, inputs.get("attention_mask"))
        weights = {
            "distill": args.distill_weight,
            "hard": args.hard_label_weight,
            "hidden": args.hidden_weight,
            "attention": args.attention_weight,
            "cosine": args.cosine_weight,
        }
        loss = sum(weights[name] * value for name, value in parts.items() if weights[name] > 0)
        loss = self.add_l1_penalty(loss, model, num_items_in_batch)
        if model.training:
            for name, value in parts.items():
                self._loss_sums[name] += value.detach().item()
            self._loss_count += 1
        return (loss, student_out) if return_outputs else loss

    def _teacher_outputs(self, inputs: dict, extra: dict, student_logits, training: bool):
        """The cached outputs of the batch's rows when all are cached, else the live teacher's."""
        if self.teacher_cache is not None:
            cached = self.teacher_cache.lookup(inputs, like=student_logits)
            if cached is not None:
                return cached
            where = f"the teacher cache '{self.teacher_cache.folder}'"
            if training:
                raise UsageError(f"A training batch holds rows that are not in {where}; the collator must pass the "
                                 "train dataset's input ids unchanged.")  # fmt: skip
            if self.teacher is None:
                raise UsageError(f"Held-out batches are not in {where}; pass the teacher too, to compute the "
                                 "distillation loss on them.")  # fmt: skip
        with torch.no_grad():
            return self.teacher(**self._select(inputs, self._teacher_keys), **extra)

    def distillation_losses(self, student_out, teacher_out, labels, attention_mask) -> dict[str, torch.Tensor]:
        """Every loss whose weight is non-zero, unweighted, keyed by name."""
        args = self.args
        parts = {}
        s_logits, t_logits = student_out.logits, teacher_out.logits
        if args.distill_weight > 0:
            if s_logits.shape[-1] == 1:
                parts["distill"] = losses.soft_target_mse(s_logits, t_logits)
            elif args.divergence == "forward_kl":
                parts["distill"] = losses.soft_target_kl(s_logits, t_logits, args.temperature)
            else:
                parts["distill"] = losses.token_divergence(
                    s_logits, t_logits, args.divergence, args.temperature, args.jsd_beta
                ).mean()
        if args.hard_label_weight > 0 and labels is not None:
            parts["hard"] = losses.hard_label_loss(s_logits, labels)
        pairs = sorted(self.layer_map.items())
        if args.hidden_weight > 0 or args.cosine_weight > 0:
            # hidden_states[0] is the embedding output; layer i's output is hidden_states[i + 1].
            s_states = [student_out.hidden_states[s + 1] for s, _ in pairs]
            t_states = [teacher_out.hidden_states[t + 1] for _, t in pairs]
            if self.hidden_projection is not None:
                s_states = [self.hidden_projection(h) for h in s_states]
            if args.hidden_weight > 0:
                parts["hidden"] = torch.stack(
                    [losses.hidden_state_mse(s, t, attention_mask) for s, t in zip(s_states, t_states)]
                ).mean()
            if args.cosine_weight > 0:
                parts["cosine"] = torch.stack(
                    [losses.hidden_state_cosine(s, t, attention_mask) for s, t in zip(s_states, t_states)]
                ).mean()
        if args.attention_weight > 0:
            parts["attention"] = self._attention_loss(student_out, teacher_out, attention_mask, pairs)
        return parts

    @staticmethod
    def _attention_loss(student_out, teacher_out, attention_mask, pairs) -> torch.Tensor:
        maps = [losses.attention_mse(student_out.attentions[s], teacher_out.attentions[t], attention_mask)
                for s, t in pairs]  # fmt: skip
        return torch.stack(maps).mean()

    def token_losses(self, student_out, teacher_out, labels, attention_mask, num_items_in_batch, head=None):
        """Causal LM losses over the real tokens: position t predicts token t + 1 where labels[t + 1] != -100.

        Each loss is a sum over those tokens divided by `num_items_in_batch` (the Trainer's count over the whole
        accumulated batch, and across processes), so accumulation 2 x 4 gives the gradients of one batch of 8.
        With `head` (the student's lm_head), the logits come from the final hidden states chunk by chunk.
        """
        if labels is None:
            raise UsageError("Token-level distillation needs `labels` in each batch (the input ids, -100 at padding).")
        args = self.args
        mask = labels[:, 1:] != -100
        if num_items_in_batch is not None:
            denominator = num_items_in_batch
            self.loss_is_scaled_for_ga = True
            if args.average_tokens_across_devices and args.world_size > 1:
                denominator = denominator / args.world_size  # DDP averages the ranks' gradients
        else:  # evaluation, or a model that takes no loss kwargs
            denominator = mask.sum().clamp(min=1)
            self.loss_is_scaled_for_ga = False

        def reduce(per_token: torch.Tensor) -> torch.Tensor:
            return per_token.sum() / denominator

        if head is not None:
            parts = self._chunked_logit_losses(student_out, teacher_out, labels, mask, head)
            parts = {name: value / denominator for name, value in parts.items()}
        else:
            parts = self._logit_losses(student_out, teacher_out, labels, mask, reduce)
        pairs = sorted(self.layer_map.items())
        if args.hidden_weight > 0 or args.cosine_weight > 0:
            s_states = [student_out.hidden_states[s + 1][:, :-1][mask] for s, _ in pairs]
            t_states = [teacher_out.hidden_states[t + 1][:, :-1][mask] for _, t in pairs]
            if self.hidden_projection is not None:
                s_states = [self.hidden_projection(h) for h in s_states]
            if args.hidden_weight > 0:
                parts["hidden"] = torch.stack(
                    [reduce(losses.hidden_mse_per_token(s, t)) for s, t in zip(s_states, t_states)]
                ).mean()
            if args.cosine_weight > 0:
                parts["cosine"] = torch.stack(
                    [reduce(losses.hidden_cosine_per_token(s, t)) for s, t in zip(s_states, t_states)]
                ).mean()
        if args.attention_weight > 0:
            parts["attention"] = self._attention_loss(student_out, teacher_out, attention_mask, pairs)
        return parts

    def _logit_losses(self, student_out, teacher_out, labels, mask, reduce) -> dict[str, torch.Tensor]:
        args = self.args
        s_logits = student_out.logits[:, :-1][mask]
        parts = {}
        if args.distill_weight > 0 and teacher_out.logits is None:  # a teacher cache's top-k log-probabilities
            t_log_probs, t_ids = (
                t[:, :-1][mask].to(s_logits.device) for t in (teacher_out.log_probs, teacher_out.ids)
            )
            parts["distill"] = reduce(losses.top_k_forward_kl(s_logits, t_log_probs, t_ids, args.temperature))
        elif args.distill_weight > 0:
            t_logits = teacher_out.logits[:, :-1][mask].to(s_logits.device)
            parts["distill"] = reduce(
                losses.token_divergence(s_logits, t_logits, args.divergence, args.temperature, args.jsd_beta)
            )
            del t_logits
        if args.hard_label_weight > 0:
            parts["hard"] = reduce(losses.next_token_cross_entropy(s_logits, labels[:, 1:][mask]))
        return parts

    def _chunked_logit_losses(self, student_out, teacher_out, labels, mask, head) -> dict[str, torch.Tensor]:
        """Summed KD and cross-entropy losses, `loss_chunk_tokens` real tokens at a time.

        Each chunk's logits (student and teacher) exist only inside a checkpointed function: the backward pass
        recomputes them chunk by chunk, so peak memory holds one chunk's logits instead of the batch's.
        """
        from torch.utils.checkpoint import checkpoint

        args = self.args
        s_hidden = student_out.hidden_states[-1][:, :-1][mask]
        cached = getattr(teacher_out, "log_probs", None) is not None  # a teacher cache's top-k log-probabilities
        if cached:
            t_rows = [t[:, :-1][mask].to(s_hidden.device) for t in (teacher_out.log_probs, teacher_out.ids)]
        else:
            t_rows = [teacher_out.hidden_states[-1][:, :-1][mask].to(s_hidden.device)]
            teacher_head = self.accelerator.unwrap_model(self.teacher).get_output_embeddings()
        targets = labels[:, 1:][mask]
        use_kd, use_ce = args.distill_weight > 0, args.hard_label_weight > 0

        def chunk_losses(s_h, y, *t):
            s_logits = head(s_h)
            zero = s_logits.new_zeros((), dtype=torch.float32)
            kd = ce = zero
            if use_kd and cached:
                kd = losses.top_k_forward_kl(s_logits, t[0], t[1], args.temperature).sum()
            elif use_kd:
                with torch.no_grad():
                    t_logits = teacher_head(t[0])
                kd = losses.token_divergence(s_logits, t_logits, args.divergence, args.temperature, args.jsd_beta)
                kd = kd.sum()
            if use_ce:
                ce = losses.next_token_cross_entropy(s_logits, y).sum()
            return torch.stack([kd, ce])

        total = s_hidden.new_zeros(2, dtype=torch.float32)
        size = args.loss_chunk_tokens
        for start in range(0, s_hidden.shape[0], size):
            end = start + size
            total = total + checkpoint(chunk_losses, s_hidden[start:end], targets[start:end],
                                       *(t[start:end] for t in t_rows), use_reentrant=False)  # fmt: skip
        parts = {}
        if use_kd:
            parts["distill"] = total[0]
        if use_ce:
            parts["hard"] = total[1]
        return parts

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_count:
            for name, total in self._loss_sums.items():
                logs[f"loss_{name}"] = round(total / self._loss_count, 4)
            self._loss_sums.clear()
            self._loss_count = 0
        super().log(logs, start_time)


def check_chunkable(model, role: str) -> None:
    """The chunked loss takes lm_head of the final hidden states: the logits must be exactly that."""
    import inspect

    config = model.config.get_text_config()
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        raise UsageError(f"The {role} ({config.model_type}) cannot compute partial logits; drop --loss-chunk-tokens.")
    for key in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale"):
        if getattr(config, key, None) not in (None, 1.0):
            raise UsageError(
                f"The {role} ({config.model_type}) transforms its logits ({key}); --loss-chunk-tokens does not "
                "support it."
            )


def is_causal_lm(model) -> bool:
    """A model with a language-modelling head over the vocabulary (distilled token by token)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = type(model).__name__
    return name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()) or name.endswith(("ForCausalLM", "LMHeadModel"))


def _vocab_size(config) -> int | None:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text_config, "vocab_size", None)


def check_compatible(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    """Refuse, before training, a student that cannot learn from this teacher's outputs."""
    t_cfg, s_cfg = teacher.config, student.config
    if is_causal_lm(teacher) != is_causal_lm(student):
        raise UsageError(
            f"Teacher ({type(teacher).__name__}) and student ({type(student).__name__}) must both be causal "
            "language models or both be classifiers."
        )
    if _vocab_size(t_cfg) != _vocab_size(s_cfg):
        raise UsageError(
            f"Teacher and student vocabularies differ ({_vocab_size(t_cfg)} vs {_vocab_size(s_cfg)} tokens); "
            "they must share a tokenizer."
        )
    if is_causal_lm(student):
        return
    if t_cfg.num_labels != s_cfg.num_labels:
        raise UsageError(
            f"Teacher has {t_cfg.num_labels} labels but the student has {s_cfg.num_labels}; they must match."
        )


PROJECTION_FILE = "hidden_projection.safetensors"


class ProjectionCallback(TrainerCallback):
    """Does for the hidden-state projection what the Trainer does only for the model's own parameters.

    The projection trains with the student but is part of neither the student nor its DDP wrapper, so
    without this its gradients would never be averaged across ranks, clipped or zeroed (they would pile up
    over every step), and checkpoints would not hold it.
    """

    def __init__(self, projection: nn.Module):
        self.projection = projection

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grads = [p.grad for p in self.projection.parameters() if p.grad is not None]
        if not grads:
            return
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for grad in grads:
                dist.all_reduce(grad)
                grad /= dist.get_world_size()
        if args.max_grad_norm and args.max_grad_norm > 0:  # its own norm, apart from the student's
            nn.utils.clip_grad_norm_(self.projection.parameters(), args.max_grad_norm)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.projection.zero_grad(set_to_none=True)

    def on_save(self, args, state, control, **kwargs):
        from safetensors.torch import save_file

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            tensors = {k: v.contiguous().cpu() for k, v in self.projection.state_dict().items()}
            save_file(tensors, folder / PROJECTION_FILE)

    def on_train_begin(self, args, state, control, **kwargs):
        from safetensors.torch import load_file

        from ..training import resume_folder

        path = resume_folder(args, state) / PROJECTION_FILE
        if state.global_step > 0 and path.is_file():
            with torch.no_grad():  # in place, so the optimizer keeps pointing at the same tensors
                for name, value in load_file(path).items():
                    self.projection.get_parameter(name).copy_(value)

"""--importance magnitude|activation|taylor for FFN neurons: the scores, the gradual callback and one-shot width."""

import json
import logging

import pytest
import torch
from conftest import random_batches, run_cli, snapshot, tiny_classifier, tiny_lm
from test_pruning_callback import train
from torch import nn

from hfcompress.cli.main import main
from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig
from hfcompress.pruning.ffn import FeedForward, find_feed_forwards, neuron_masks, neuron_scores
from hfcompress.pruning.neuron_importance import NeuronStats, taylor_scores


class HandBuiltBlock(nn.Module):
    """x (2 features) -> a = up(x) (3 neurons, no nonlinearity, so a can be negative) -> down(a) (1 output)."""

    def __init__(self):
        super().__init__()
        self.up = nn.Linear(2, 3, bias=False)
        self.down = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.down.weight.copy_(torch.tensor([[1.0, 2.0, -1.0]]))  # dL/da = (1, 2, -1) when L = sum(output)

    def forward(self, x, attention_mask=None):
        return self.down(self.up(x))


def _hand_built_stats(taylor: bool):
    block = HandBuiltBlock().train()
    stats = NeuronStats(block, [FeedForward(up=[block.up], down=block.down)], taylor=taylor)
    # Batch 1: tokens (1, -2) and (3, 0) give a = (1, -2, -1) and (3, 0, 3); the third position is padding.
    x1 = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [100.0, 100.0]]])
    block(x1, attention_mask=torch.tensor([[1, 1, 0]])).sum().backward()
    # Batch 2, no mask: token (0, 1) gives a = (0, 1, 1).
    block(torch.tensor([[[0.0, 1.0]]])).sum().backward()
    block.eval()
    block(torch.tensor([[[50.0, 50.0]]])).sum().backward()  # an evaluation pass: never counted
    return stats


def test_activation_is_the_mean_absolute_activation_over_real_tokens():
    stats = _hand_built_stats(taylor=False)
    # |a| summed over the 3 real tokens: (1+3+0, 2+0+1, 1+3+1), divided by 3.
    (scores,) = stats.scores()
    assert torch.allclose(scores, torch.tensor([4.0, 3.0, 5.0]) / 3)
    assert neuron_masks([FeedForward(up=[], down=nn.Linear(3, 1))], 1, [scores])[0].tolist() == [True, False, True]
    stats.reset()
    assert stats.scores() is None  # nothing recorded since the reset


def test_taylor_is_the_absolute_sum_of_activation_times_gradient_per_batch():
    stats = _hand_built_stats(taylor=True)
    # Batch 1: sum over tokens of a * g = (1+3)*1, (-2+0)*2, (-1+3)*(-1) -> |.| = 4, 4, 2; batch 2: 0, 2, 1.
    (scores,) = stats.scores()
    assert torch.allclose(scores, torch.tensor([4.0 + 0.0, 4.0 + 2.0, 2.0 + 1.0]) / 2)


def test_taylor_scores_of_a_causal_lm_match_a_hand_computation():
    model = tiny_lm("llama", 128, layers=2)
    batches = random_batches(128, count=2)
    seen = []

    def keep(module, args):
        args[0].retain_grad()
        seen.append(args[0])

    handle = model.model.layers[1].mlp.down_proj.register_forward_pre_hook(keep)
    expected = torch.zeros(64)
    for batch in batches:
        model(**batch, labels=batch["input_ids"]).loss.backward()
        a = seen[-1]
        expected += (a * a.grad).reshape(-1, 64).sum(dim=0).abs().detach() / len(batches)
    handle.remove()
    model.zero_grad(set_to_none=True)

    scores = taylor_scores(model, batches)
    assert torch.allclose(scores[1], expected, rtol=1e-4, atol=1e-9)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())  # flags restored, no weight grads


def _contrasting_bert():
    """Per layer, neuron 5 has the smallest weights but a large activation (bias 3), and neuron 9 large weights but
    an activation of about zero (no input weights, bias -10): magnitude would drop 5, activation drops 9."""
    model = tiny_classifier("bert", layers=2)
    with torch.no_grad():
        for ffn in find_feed_forwards(model):
            up = ffn.up[0]
            up.weight[5] *= 0.001
            up.bias[5] = 3.0
            ffn.down.weight[:, 5] *= 0.001
            up.weight[9] = 0.0
            up.bias[9] = -10.0
            ffn.down.weight[:, 9] *= 10
    assert all(int(neuron_scores(ffn).argmin()) == 5 for ffn in find_feed_forwards(model))
    return model


@pytest.mark.parametrize("importance", ["activation", "taylor"])
def test_the_callback_drops_the_neurons_with_the_smallest_activation(tmp_path, tokenizer, importance):
    config = PruningConfig(structure="ffn", ffn_size=63, importance=importance, end_step=2, update_frequency=1)
    _, pruner, _ = train(tmp_path, tokenizer, config, model=_contrasting_bert(), steps=3, learning_rate=1e-4)
    assert [removed for _, removed in pruner.history] == [0.0, 1 / 64, 1 / 64]
    for keep, ffn in zip(pruner.unit_masks, pruner.ffns):
        assert torch.nonzero(~keep).flatten().tolist() == [9]
        assert (ffn.down.weight[:, 9] == 0).all() and (ffn.down.weight[:, 5] != 0).all()
    assert not pruner.neuron_stats.attached  # hooks removed when training ends


def test_an_update_before_any_batch_falls_back_to_magnitude_once(caplog):
    model = _contrasting_bert()
    config = PruningConfig(structure="ffn", ffn_size=62, importance="activation", initial_sparsity=0.45,
                           schedule="linear", end_step=2, update_frequency=1)  # fmt: skip
    pruner = GradualMagnitudePruningCallback(config)
    pruner.setup(model, 6)
    with caplog.at_level(logging.WARNING, logger="hfcompress"):
        pruner.update_masks(0)  # 1 neuron per layer, before any batch: by magnitude
        pruner.update_masks(0)
    assert [torch.nonzero(~k).flatten().tolist() for k in pruner.unit_masks] == [[5], [5]]
    assert sum("scored by weight magnitude" in r.message for r in caplog.records) == 1
    model.train()
    with torch.no_grad():
        model(**random_batches(1000, count=1)[0])
    assert all(keep[9] for keep in neuron_masks(pruner.ffns, 2))  # magnitude would keep 9
    pruner.update_masks(2)  # 2 per layer, by activation: 5 (pruned, so zero activation) and 9 (about zero)
    assert [torch.nonzero(~k).flatten().tolist() for k in pruner.unit_masks] == [[5, 9], [5, 9]]
    assert pruner.neuron_stats.scores() is None  # the statistics were used up by the update


def test_default_importance_and_magnitude_masks_are_unchanged():
    assert PruningConfig(structure="ffn").importance == "magnitude"
    assert PruningConfig(structure="width", ffn_size=32).importance == "activation"
    assert PruningConfig().importance is None
    width_heads = PruningConfig(structure="width", num_heads=2)  # heads are always scored by activation
    assert PruningConfig(**width_heads.to_dict()).importance == "activation"
    model = _contrasting_bert()
    ffns = find_feed_forwards(model)
    assert [m.tolist() for m in neuron_masks(ffns, 3)] == [m.tolist() for m in neuron_masks(ffns, 3, None)]


def _data(text_files):
    return ["--task", "causal-lm", "--train-file", text_files["train"], "--validation-file", text_files["validation"],
            "--block-size", "32", "--stride", "32", "--max-eval-samples", "8", "--latency-runs", "0",
            "--calibration-samples", "4"]  # fmt: skip


def _check_width_output(out, importance):
    from transformers import AutoModelForCausalLM

    settings = json.loads((out / "compression.json").read_text())["steps"][-1]["settings"]
    assert settings["importance"] == importance and settings["targets"] == {"ffn_size": 40}
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.intermediate_size == 40 and model.model.layers[0].mlp.down_proj.in_features == 40


def test_width_pruning_by_taylor_importance_from_the_cli(tmp_path, tiny_lm_dirs, text_files):
    out = tmp_path / "taylor"
    result = run_cli("prune", tiny_lm_dirs["llama"], "--structure", "width", "--ffn-size", "40", "--importance",
                     "taylor", *_data(text_files), "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    _check_width_output(out, "taylor")


@pytest.mark.parametrize("importance", ["magnitude", "activation"])
def test_width_pruning_by_magnitude_or_activation(tmp_path, tiny_lm_dirs, text_files, importance):
    out = tmp_path / importance  # in process, as the CLI runs it (a subprocess costs seconds of imports)
    args = ["prune", tiny_lm_dirs["llama"], "--structure", "width", "--ffn-size", "40", "--importance", importance,
            *_data(text_files), "--output-dir", out]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    _check_width_output(out, importance)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--structure", "ffn", "--importance", "fisher"],
         "Unknown importance 'fisher'; choose one of: magnitude, activation, taylor."),
        (["--structure", "heads", "--importance", "activation"],
         "--importance applies to FFN neurons (--structure ffn or width), not to --structure heads."),
        (["--importance", "taylor"],
         "--importance applies to FFN neurons (--structure ffn or width), not to --structure unstructured."),
        (["--structure", "width", "--num-kv-heads", "1", "--importance", "taylor"],
         "--importance taylor scores FFN neurons, so with --structure width it needs --ffn-size or "
         "--parameter-budget."),
    ],
)  # fmt: skip
def test_bad_importance_fails_fast_in_one_sentence(tmp_path, tiny_lm_dirs, text_files, extra, message, capsys):
    source = tiny_lm_dirs["llama"]
    before = snapshot(source)
    out = tmp_path / "out"
    code = main([str(a) for a in ["prune", source, *extra, *_data(text_files), "--output-dir", out]])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert err.strip() == f"hfcompress prune: error: {message}"
    assert not out.exists() and snapshot(source) == before

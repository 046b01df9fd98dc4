import pytest
import torch
from conftest import tiny_classifier
from test_pruning_callback import train
from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from hfcompress.errors import UsageError
from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig, make_permanent


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_labels=2, pad_token_id=0,
                         max_position_embeddings=128)  # fmt: skip
    return LlamaForSequenceClassification(config).eval()


def test_head_pruning_in_trainer_saves_a_smaller_llama(tmp_path, tokenizer):
    config = PruningConfig(structure="heads", sparsity=0.5, end_step=4, update_frequency=2)
    trainer, pruner, _ = train(tmp_path, tokenizer, config, model=tiny_llama(), steps=6)
    model = trainer.model.eval()
    assert pruner.current_sparsity == 0.5
    inputs = tokenizer(["a gripping film", "dull and slow"], padding=True, return_tensors="pt")
    with torch.no_grad():
        masked = model(**inputs).logits
    assert make_permanent(pruner, model) == {"num_attention_heads": [4, 2]}
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, masked, atol=1e-5)

    model.save_pretrained(tmp_path / "saved")
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert (reloaded.config.num_attention_heads, reloaded.config.num_key_value_heads) == (2, 1)
    assert reloaded.model.layers[0].self_attn.q_proj.weight.shape == (16, 32)
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(**inputs).logits, masked, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "electra"])
def test_encoder_families_get_a_clear_error(model_type):
    pruner = GradualMagnitudePruningCallback(PruningConfig(structure="heads", sparsity=0.5, end_step=2))
    with pytest.raises(UsageError, match="derive the attention head size .* use --structure ffn"):
        pruner.setup(tiny_classifier(model_type, layers=2), max_steps=4)

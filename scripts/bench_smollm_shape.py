"""Speed and memory at a realistic width (issue 12): a randomly initialised model of SmolLM2-135M's shape.

No pretrained causal LM is reachable here, and speed and memory need no training: the model is built from
SmolLM2-135M's config (Llama layout, 30 blocks, hidden 576, 9 query / 3 key-value heads, FFN 1536, 49,152-token
vocabulary, tied embeddings; 134.5 M parameters) with random weights, saved once, then put through the same
commands as the WikiText-2 teacher: one-shot Wanda and SparseGPT at 50% (time and peak RSS of the layer-by-layer
calibration), width pruning to about half the parameters, torchao int8 weight-only. Calibration text: WikiText-2
`valid.txt` through the WikiText-2 teacher's 8,000-token tokenizer (ids fit the larger vocabulary). Perplexities
of a random model mean nothing and are not reported; the latency of every model is taken in one process,
interleaved (bench_lm_latency.py), so run it on an idle machine.

    OMP_NUM_THREADS=2 python scripts/bench_smollm_shape.py --clm runs/bench-clm --out runs/bench-smollm
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench_common import add_latency, clm_parser, hfcompress

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, rope_theta=100000.0, hidden_act="silu")  # fmt: skip


def build(folder: Path, tokenizer_dir: Path, shape: dict, seed: int = 0) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**shape, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)


def main() -> int:
    parser = clm_parser(__doc__, "runs/bench-smollm")
    parser.add_argument("--latency-rounds", type=int, default=5, help="0 skips the latency measurement")
    parser.add_argument("--hidden-size", type=int, default=None, help="Override the shape (tests use a tiny one).")
    parser.add_argument("--intermediate-size", type=int, default=None)
    parser.add_argument("--num-layers", type=int, default=None)
    parser.add_argument("--width-hidden", type=int, default=384, help="width run: hidden channels kept")
    parser.add_argument("--width-ffn", type=int, default=1024, help="width run: FFN neurons kept")
    parser.add_argument("--width-heads", type=int, default=6, help="width run: query heads kept (2 per KV head)")
    args = parser.parse_args()
    clm, out = Path(args.clm), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = dict(SMOLLM2_135M)
    for key, value in (("hidden_size", args.hidden_size), ("intermediate_size", args.intermediate_size),
                       ("num_hidden_layers", args.num_layers)):  # fmt: skip
        if value is not None:
            shape[key] = value
    base = out / "base"
    if not (base / "config.json").is_file():
        build(base, clm / "teacher", shape)
    data = ["--task", "causal-lm", "--train-file", clm / "train.txt", "--validation-file", clm / "heldout.txt",
            "--block-size", args.block_size, "--max-eval-samples", "20", "--latency-runs", "0"]  # fmt: skip
    calibration = ["--calibration-samples", args.samples]
    plans = {
        "wanda-50": ["prune", "--method", "wanda", "--sparsity", "0.5", *calibration],
        "sparsegpt-50": ["prune", "--method", "sparsegpt", "--sparsity", "0.5", *calibration],
        "width-half": ["prune", "--structure", "width", "--hidden-size", args.width_hidden, "--ffn-size",
                       args.width_ffn, "--num-heads", args.width_heads, *calibration],
        "torchao-int8-weight": ["quantize", "--method", "torchao-int8-weight"],
    }  # fmt: skip
    chosen = args.only.split(",") if args.only else list(plans)
    results, folders = {}, {"base": base}
    for name in chosen:
        folder = out / name
        if not (folder / "compression.json").is_file():
            command, *options = plans[name]
            hfcompress(command, base, *options, *data, "--overwrite_output_dir", "--output-dir", folder)
        report = json.loads((folder / "compression.json").read_text())
        source, result, settings = report["source"], report["result"], report["steps"][-1]["settings"]
        results.setdefault("base", {"parameters": source["parameters"], "size_bytes": source["size_bytes"]})
        entry = {"parameters": result["parameters"], "size_bytes": result["size_bytes"],
                 "parameters_vs_base": round(result["parameters"] / source["parameters"], 4),
                 "smaller_on_disk": round(source["size_bytes"] / result["size_bytes"], 3)}  # fmt: skip
        for key in ("pruning_seconds", "peak_rss_bytes"):
            if key in settings:
                entry[key] = settings[key]
        if "memory_bytes" in result and "memory_bytes" in source:
            entry["memory_vs_base"] = round(result["memory_bytes"] / source["memory_bytes"], 4)
        results[name] = entry
        folders[name] = folder
    if args.latency_rounds:
        add_latency(results, folders, args.latency_rounds, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in results.items():
        rss = f"  peak RSS {entry['peak_rss_bytes'] / 2**20:.0f} MiB" if "peak_rss_bytes" in entry else ""
        print(f"{name:20s} parameters {entry['parameters'] / 1e6:7.2f}M{rss}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

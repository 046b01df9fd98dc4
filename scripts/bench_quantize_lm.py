"""Weight quantization of a causal LM (issue 12): torchao and bitsandbytes side by side, on the WikiText-2 teacher
of scripts/bench_causal_lm.py (Llama layout, 8.84 M parameters, 4.1 M of them in the untied embeddings and head).

Every method goes through `hfcompress quantize` (which keeps the embeddings and lm_head in fp32), then perplexity on
WikiText-2's test.txt as a ratio to fp32, size on disk of model.safetensors, and prefill / decode latency of every
model interleaved in one process (scripts/bench_lm_latency.py) on the CPU. Run it on an idle machine.

    python scripts/bench_causal_lm.py --out runs/bench-clm        # the teacher, once
    OMP_NUM_THREADS=2 python scripts/bench_quantize_lm.py --clm runs/bench-clm --out runs/bench-quantize-lm
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import add_latency, hfcompress

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "data" / "text" / "wikitext-2"
METHODS = ("torchao-int8-weight", "torchao-int8-dynamic", "torchao-int4-weight", "bnb-int8", "bnb-nf4")


def block_bytes(path: Path) -> int:
    """Bytes of the tensors inside the decoder blocks (what the methods quantize; embeddings and head stay fp32)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), "pt") as handle:
        for key in handle.keys():
            if ".layers." in key:
                tensor = handle.get_tensor(key)
                total += tensor.numel() * tensor.element_size()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clm", default="runs/bench-clm", help="Output folder of scripts/bench_causal_lm.py.")
    parser.add_argument("--model", default=None, help="Model folder to quantize (default: CLM/teacher).")
    parser.add_argument("--out", default="runs/bench-quantize-lm")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--latency-rounds", type=int, default=5, help="0 skips the latency measurement")
    parser.add_argument("--test-file", default=str(TEXT / "test.txt"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else Path(args.clm) / "teacher"
    folders = {"fp32": model}
    for method in args.methods.split(","):
        folder = out / method
        if not (folder / "compression.json").is_file():
            hfcompress("quantize", model, "--method", method, "--latency-runs", "0", "--overwrite_output_dir",
                       "--output-dir", folder)  # fmt: skip
        folders[method] = folder
    results = {}
    for name, folder in folders.items():
        path = out / f"test-{name}.json"
        if not path.is_file():
            hfcompress("evaluate", folder, "--task", "causal-lm", "--validation-file", args.test_file,
                       "--block-size", args.block_size, "--stride", args.block_size // 2, "--latency-runs", "0",
                       "--output-file", path)  # fmt: skip
        measured = json.loads(path.read_text())
        weights = folder / "model.safetensors"
        results[name] = {"perplexity": measured["metrics"]["perplexity"], "size_bytes": weights.stat().st_size,
                         "block_bytes": block_bytes(weights),
                         "memory_bytes": measured.get("memory_bytes")}  # fmt: skip
    base = results["fp32"]
    for entry in results.values():
        entry["ppl_vs_fp32"] = round(entry["perplexity"] / base["perplexity"], 4)
        entry["smaller_than_fp32"] = round(base["size_bytes"] / entry["size_bytes"], 3)
        entry["blocks_smaller_than_fp32"] = round(base["block_bytes"] / entry["block_bytes"], 3)
    if args.latency_rounds:
        add_latency(results, folders, args.latency_rounds, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in results.items():
        print(f"{name:22s} test ppl {entry['perplexity']:8.2f}  x fp32 {entry['ppl_vs_fp32']:.4f}  "
              f"{entry['smaller_than_fp32']:.2f}x smaller on disk, "
              f"blocks {entry['blocks_smaller_than_fp32']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

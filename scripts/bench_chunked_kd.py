"""Peak memory of one distillation step, plain token loss against --loss-chunk-tokens (issue 12).

A Llama-shaped teacher and student with a 128k-token vocabulary and a small hidden size (so the logits, not
the weights, dominate), batch 4 x 512 tokens, forward KL + cross-entropy. Each mode runs in its own fresh
process, modes interleaved over rounds; the figure is the process's peak RSS minus its RSS just before the
step (CPU), or torch.cuda.max_memory_allocated on a GPU.

    python scripts/bench_chunked_kd.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys


def one_step(chunk: int, vocab: int, hidden: int, batch: int, length: int) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hfcompress import DistillationArguments, DistillationTrainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)

    def model(layers):
        config = AutoConfig.for_model("llama", vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                      num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=length,
                                      tie_word_embeddings=False)  # fmt: skip
        return AutoModelForCausalLM.from_config(config).to(device)

    teacher, student = model(4), model(2)
    args = DistillationArguments(output_dir="/tmp/bench-chunked-kd", report_to="none", loss_chunk_tokens=chunk,
                                 distill_weight=0.5, hard_label_weight=0.5, temperature=1.0,
                                 use_cpu=device == "cpu")  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    ids = torch.randint(0, vocab, (batch, length), device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    student.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    loss = trainer.compute_loss(student, inputs, num_items_in_batch=torch.tensor(batch * (length - 1)))
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"chunk": chunk, "device": device, "loss": loss.item(), "peak_step_bytes": peak}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_step(args.child, args.vocab, args.hidden, args.batch, args.length)))
        return 0
    results: dict[int, list[dict]] = {0: [], args.chunk: []}
    for _ in range(args.rounds):
        for chunk in results:  # interleaved, each in a fresh process
            command = [sys.executable, __file__, "--child", str(chunk), "--vocab", str(args.vocab), "--hidden",
                       str(args.hidden), "--batch", str(args.batch), "--length", str(args.length)]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[chunk].append(json.loads(out.strip().splitlines()[-1]))
    summary = {}
    for chunk, runs in results.items():
        peaks = [r["peak_step_bytes"] / 2**20 for r in runs]
        summary["plain" if chunk == 0 else f"chunked-{chunk}"] = {
            "median_mib": statistics.median(peaks), "min_mib": min(peaks), "max_mib": max(peaks),
            "loss": runs[0]["loss"], "device": runs[0]["device"],
        }  # fmt: skip
    plain, chunked = summary["plain"], summary[f"chunked-{args.chunk}"]
    summary["ratio_chunked_to_plain"] = round(chunked["median_mib"] / plain["median_mib"], 4)
    summary["setup"] = vars(args) | {"child": None}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

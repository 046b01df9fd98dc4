"""Causal-LM distillation benchmark on WikiText-2 (issue 11), every model through the hfcompress CLI.

WikiText-2's train split is not available here, so (as ../shared/data/README.md says) models train on
`valid.txt`: its first 90% of lines train, its last 10% are held out for early stopping (best epoch kept), and
perplexity is reported on `test.txt`. A byte-level BPE tokenizer (8k) is trained on the training lines.

- teacher: Llama-shaped, 6 layers, hidden 256, trained from scratch (hfcompress finetune)
- students: teacher layers 0, 2, 5, distilled with 0.5 KD + 0.5 next-token CE, one run per divergence
  (forward KL, reverse KL, JSD beta 0.5)
- control: the same 3-layer student trained on the text alone (distill with --distill-weight 0)

    OMP_NUM_THREADS=2 python scripts/bench_causal_lm.py --out runs/bench-clm
    python scripts/bench_lm_latency.py runs/bench-clm/teacher runs/bench-clm/student-forward_kl ...  # idle machine

Perplexities do not depend on machine load; latency is measured separately, on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "data" / "text" / "wikitext-2"
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def hfcompress(*args) -> None:
    command = [sys.executable, "-m", "hfcompress", *map(str, args)]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def prepare(out: Path, vocab: int, seed: int, text: Path = TEXT, size: tuple[int, int, int] = (256, 688, 6)) -> Path:
    """Split valid.txt 90/10 by lines, train the tokenizer, save the untrained teacher (hidden, FFN, layers)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hfcompress.data.bpe import train_bpe_tokenizer

    lines = (text / "valid.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    cut = int(len(lines) * 0.9)
    (out / "train.txt").write_text("".join(lines[:cut]), encoding="utf-8")
    (out / "heldout.txt").write_text("".join(lines[cut:]), encoding="utf-8")
    init = out / "teacher-init"
    if (init / "config.json").is_file():
        return init
    tokenizer = train_bpe_tokenizer(lines[:cut], vocab_size=vocab, model_max_length=512)
    hidden, ffn, layers = size
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(init)
    tokenizer.save_pretrained(init)
    return init


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench-clm")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--teacher-epochs", type=float, default=8)
    parser.add_argument("--student-epochs", type=float, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", default="0,2,5")
    parser.add_argument("--runs", default="teacher,forward_kl,reverse_kl,jsd,control,test")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--text-dir", default=str(TEXT), help="Folder with WikiText-2's valid.txt and test.txt.")
    parser.add_argument("--hidden-size", type=int, default=256, help="Of the teacher (4 attention heads).")
    parser.add_argument("--intermediate-size", type=int, default=688, help="Of the teacher.")
    parser.add_argument("--num-layers", type=int, default=6, help="Of the teacher.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = args.runs.split(",")
    text = Path(args.text_dir)
    init = prepare(out, args.vocab, args.seed, text, (args.hidden_size, args.intermediate_size, args.num_layers))
    data = ["--task", "causal-lm", "--train-file", out / "train.txt", "--validation-file", out / "heldout.txt",
            "--block-size", args.block_size, "--latency-runs", "0"]  # fmt: skip
    train = ["--per_device_train_batch_size", "16", "--warmup_steps", "100", "--weight_decay", "0.01",
             "--logging_steps", "50", "--report_to", "none", "--seed", args.seed, "--early-stopping-patience", "1",
             "--learning_rate", args.lr, "--overwrite_output_dir"]  # fmt: skip
    if "teacher" in runs:
        hfcompress("finetune", init, *data, *train, "--num_train_epochs", args.teacher_epochs,
                   "--output-dir", out / "teacher")  # fmt: skip
    students = {f"student-{d}": ["--divergence", d, "--distill-weight", "0.5", "--hard-label-weight", "0.5"]
                for d in DIVERGENCES}  # fmt: skip
    students["control"] = ["--distill-weight", "0", "--hard-label-weight", "1"]
    for run in runs:  # in the order asked for
        name = "control" if run == "control" else f"student-{run}"
        losses = students.get(name)
        if losses is not None:
            hfcompress("distill", out / "teacher", "--student-layers", args.layers, *data, *train, *losses,
                       "--temperature", "1.0", "--num_train_epochs", args.student_epochs,
                       "--output-dir", out / name)  # fmt: skip
    if "test" in runs:
        results = {}
        for name in ["teacher", *students]:
            if not (out / name / "config.json").is_file():
                continue
            path = out / f"test-{name}.json"
            path.unlink(missing_ok=True)
            hfcompress("evaluate", out / name, "--task", "causal-lm", "--validation-file", text / "test.txt",
                       "--block-size", args.block_size, "--stride", args.block_size // 2, "--latency-runs", "0",
                       "--output-file", path)  # fmt: skip
            result = json.loads(path.read_text())
            report = json.loads((out / name / "compression.json").read_text())
            stopped = next((s["settings"].get("early_stopping") for s in reversed(report["steps"])
                            if s["settings"].get("early_stopping")), None)  # fmt: skip
            results[name] = {**result["metrics"], "parameters": result["parameters"],
                             "best_epoch": (stopped or {}).get("best_epoch"),
                             "heldout_history": (stopped or {}).get("history")}  # fmt: skip
        teacher = results.get("teacher", {}).get("perplexity")
        control = results.get("control", {}).get("perplexity")
        for entry in results.values():
            if teacher:
                entry["ppl_vs_teacher"] = round(entry["perplexity"] / teacher, 4)
            if control:
                entry["ppl_vs_control"] = round(entry["perplexity"] / control, 4)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        for name, entry in results.items():
            print(
                f"{name:22s} test ppl {entry['perplexity']:8.2f}  bpb {entry['bits_per_byte']:.4f}  "
                f"x teacher {entry.get('ppl_vs_teacher', float('nan')):.3f}  "
                f"x control {entry.get('ppl_vs_control', float('nan')):.3f}  best epoch {entry['best_epoch']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

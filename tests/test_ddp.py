import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT


def run_two_ranks(mode: str, tokenizer_dir, out) -> list[dict]:
    with socket.socket() as sock:  # a free loopback port for the process group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    rendezvous = ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    worker = [str(ROOT / "tests" / "ddp_worker.py"), mode, str(tokenizer_dir), str(out)]
    result = subprocess.run(launcher + rendezvous + worker, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    return ranks


@pytest.mark.slow
def test_two_processes_compute_the_same_masks(tmp_path, minilm_path):
    ranks = run_two_ranks("prune", minilm_path, tmp_path)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["sparsity"] == pytest.approx(0.7, abs=1e-3)


@pytest.mark.slow
def test_two_processes_keep_the_same_hidden_projection(tmp_path, minilm_path):
    # Each rank sees other batches; the projection outside DDP stays equal only if its gradients are averaged.
    ranks = run_two_ranks("distill", minilm_path, tmp_path)
    assert ranks[0]["changed"] and ranks[1]["changed"]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["student"] == ranks[1]["student"]


def _torchrun(*args, processes=2):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
               "127.0.0.1", "--master_port", str(port), "-m", "hfcompress", *map(str, args)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_two_cli_processes_write_one_report_that_agrees_with_one_process(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    from conftest import run_cli

    common = ["finetune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, "--max-steps", "6",
              "--learning-rate", "1e-3", "--latency-runs", "1", "--report_to", "none"]  # fmt: skip
    result = _torchrun(*common, "--use_cpu", "--per-device-train-batch-size", "4", "--output-dir", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Fine-tuning") == 1  # one summary: only the main process measures and reports
    two = json.loads((tmp_path / "two" / "compression.json").read_text())
    assert two["steps"][-1]["settings"]["processes"] == 2 and two["steps"][-1]["settings"]["steps_done"] == 6
    card = (tmp_path / "two" / "README.md").read_text()
    assert "steps_done=6, epochs_done=" in card and "processes=2" in card  # rendered from that one report

    one = run_cli(*common, "--per-device-train-batch-size", "8", "--output-dir", tmp_path / "one")  # same global batch
    assert one.returncode == 0, one.stderr[-3000:]
    single = json.loads((tmp_path / "one" / "compression.json").read_text())
    assert two["result"]["metrics"]["accuracy"] == pytest.approx(single["result"]["metrics"]["accuracy"], abs=0.1)


def test_processes_that_would_train_alone_are_refused(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    result = _torchrun("finetune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir,
                       "--output-dir", tmp_path / "out")  # fmt: skip
    assert result.returncode != 0
    assert "on CPU pass --use_cpu so they train together over gloo" in result.stderr
    assert not (tmp_path / "out").exists()

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

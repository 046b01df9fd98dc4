import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_two_processes_compute_the_same_masks(tmp_path, minilm_path):
    with socket.socket() as sock:  # a free loopback port for the process group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    rendezvous = ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    worker = [str(ROOT / "tests" / "ddp_prune_worker.py"), str(minilm_path), str(tmp_path)]
    command = launcher + rendezvous + worker
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["sparsity"] == pytest.approx(0.7, abs=1e-3)

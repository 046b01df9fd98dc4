"""Sharded engines. FSDP2 runs on CPU over gloo only when accelerate is made to keep it (fsdp_worker.py says how);
the CLI refuses --fsdp and --deepspeed on CPU, and DeepSpeed ZeRO-3 is refused where results would be wrong."""

import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, run_cli, tiny_classifier

from hfcompress.errors import UsageError


def run_fsdp_worker(tokenizer_dir, out) -> list[dict]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    rendezvous = ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    worker = [str(ROOT / "tests" / "fsdp_worker.py"), str(tokenizer_dir), str(out)]
    command = launcher + rendezvous + worker
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_fsdp2_on_two_gloo_processes_matches_one_process(tmp_path, tokenizer, minilm_path):
    import fsdp_worker

    ranks = run_fsdp_worker(minilm_path, tmp_path / "fsdp")
    first, second = ranks
    assert all(r["world_size"] == 2 and r["prune"]["sharded"] and r["distill"]["sharded"] for r in ranks)

    # Pruning: masks from the full weights, the same on both ranks, and the same as unsharded on equal weights.
    for structure, found in first["masks_on_full_weights"].items():
        assert found == {"same_masks": True, "same_weights": True, "sparsity": 0.5}, structure
    assert first["prune"]["masks"] == second["prune"]["masks"]
    assert first["prune"]["history"] == second["prune"]["history"]
    assert first["prune"]["sparsity"] == pytest.approx(0.7, abs=1e-3)
    # The gathered model is plain, its zeros are the masks, and what rank 0 saved loads back unchanged.
    assert first["prune"]["plain_after"] and first["prune"]["zeros_match_masks"]
    assert first["prune"]["reloaded_logits_match"]

    # Distillation: the teacher is sharded and outside the optimizer; the projection trains and stays in sync.
    d0, d1 = first["distill"], second["distill"]
    assert d0["teacher_sharded"] and not d0["teacher_in_optimizer"] and d0["projection_in_optimizer"]
    assert d0["projection_changed"] and d0["projection"] == d1["projection"] and d0["student"] == d1["student"]
    assert d0["reloaded_logits_match"]

    # One process, batch 8 (the same global batch, the whole data set per step), gives the same models.
    one_prune = fsdp_worker.prune_run(tokenizer, str(tmp_path / "one" / "prune"), fsdp=False)
    one_distill = fsdp_worker.distill_run(tokenizer, str(tmp_path / "one" / "distill"), fsdp=False)
    close = torch.testing.assert_close
    close(torch.tensor(one_distill["logits"]), torch.tensor(d0["logits"]), atol=1e-5, rtol=0)
    close(torch.tensor(one_prune["logits"]), torch.tensor(first["prune"]["logits"]), atol=2e-3, rtol=0)
    assert one_prune["history"] == [tuple(step) for step in first["prune"]["history"]]
    keep = {n: torch.tensor(v) for n, v in first["prune"]["keep"].items()}
    agree = sum(int((torch.tensor(v) == keep[n]).sum()) for n, v in one_prune["keep"].items())
    assert agree / sum(len(v) for v in keep.values()) > 0.95  # Adam magnifies float noise at near-tied magnitudes


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without GPUs")
def test_cli_refuses_sharded_engines_on_cpu(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 3}}')
    common = ["finetune", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, "--max-steps", "1"]
    for flags, expected in ((["--use_cpu", "--fsdp"], "--fsdp needs GPUs: on CPU accelerate silently trains"),
                            (["--deepspeed", tmp_path / "ds.json"], "--deepspeed needs")):  # fmt: skip
        result = run_cli(*common, *flags, "--output-dir", tmp_path / "out")
        assert result.returncode == 2, result.stderr[-2000:]
        assert expected in result.stderr
        assert not (tmp_path / "out").exists()


def test_zero3_is_refused_for_the_teacher_and_for_pruning():
    from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig
    from hfcompress.sharding import prepare_teacher

    zero3 = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3), fsdp_plugin=None))
    with pytest.raises(UsageError, match="ZeRO-3 is not supported with a teacher"):
        prepare_teacher(tiny_classifier("bert", layers=2), zero3)

    model = tiny_classifier("bert", layers=2)
    next(model.parameters()).ds_id = 0  # what ZeRO-3 marks its partitioned parameters with
    with pytest.raises(UsageError, match="Pruning does not support DeepSpeed ZeRO-3"):
        GradualMagnitudePruningCallback(PruningConfig(sparsity=0.5)).setup(model, 10)

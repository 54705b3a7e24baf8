"""Training under torchrun: two gloo processes on the CPU train one epoch on ~300 real shared faces.

Rank 0 alone writes the run; the checkpoint loads; --resume continues the 2-process run in one process.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import MTFL_SPEC, YTF_SPEC, fkd_command
from train.distributed import DistContext, shard


def test_shards_are_equal_disjoint_and_identity_in_one_process():
    idx = np.arange(11)
    parts = [shard(idx, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert len(set(np.concatenate(parts))) == 9
    assert (shard(idx, DistContext()) == idx).all()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data, cli):
    out = tmp_path_factory.mktemp("ddp") / "faces.npz"
    r = cli("train", "prepare", "--data", YTF_SPEC, "--data", MTFL_SPEC, "--limit", "150", "--out", out)
    assert r.code == 0, r.err
    return out


def _torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "torchrun"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
def test_two_process_gloo_fit_trains_and_resumes(prepared, tmp_path, cli):
    run = tmp_path / "run"
    cmd = [*_torchrun(), "--nproc-per-node", "2", "--master-port", str(29500 + os.getpid() % 1000),
           *fkd_command(), "train", "fit", "--data", str(prepared), "--out", str(run),
           "--epochs", "1", "--batch", "32", "--lr", "1e-3", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "2 processes" in proc.stdout
    assert proc.stdout.count("epoch 1/1") == 1  # rank 0 alone logs
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["train_loss"])) and math.isfinite(
        float(rows[0]["val_rmse_px"]))
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]
    assert not [p for p in run.iterdir() if "tmp" in p.name]
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1
    # --resume across world sizes: the 2-process run goes on in a single process
    r = cli("train", "fit", "--data", prepared, "--out", run, "--epochs", "2", "--batch", "32", "--lr", "1e-3",
            "--device", "cpu", "--resume")
    assert r.code == 0, r.err
    assert len(list(csv.DictReader(open(run / "metrics.csv")))) == 2
    shutil.rmtree(run)

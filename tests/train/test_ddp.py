"""Multi-process training under torchrun (DistributedDataParallel, gloo on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asfyolo_rt.train.trainer import load_state

from ._synthetic import write_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_and_only_rank0_writes(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_train=8, n_val=2)
    exe = shutil.which("asfyolo-rt", path=str(Path(sys.executable).parent))
    assert exe is not None
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), exe, "train", "--data", str(data), "--img-size", "64", "--epochs", "2",
           "--batch", "4", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "runs"), "--name", "ddp"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    env_json = json.loads((run / "env.json").read_text())
    assert env_json["world_size"] == 2
    state = load_state(run / "last.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 2
    # 8 images, 2 per process per step -> 2 steps per epoch; each step is one optimizer step in warm-up
    assert state["last_opt_step"] == 3 and state["ema"]["updates"] == 4
    assert (run / "best.safetensors").is_file() and (run / "results.csv").read_text().count("\n") == 3

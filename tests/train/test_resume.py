"""Resumption: a run interrupted mid-epoch and resumed ends in the same state as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.train.config import TrainConfig
from asfyolo_rt.train.trainer import load_state, train

from ._synthetic import write_dataset


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("blobs"), n_train=6, n_val=2)


@pytest.fixture
def one_thread():
    """Single-threaded CPU kernels are bitwise reproducible, so states can be compared exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(data: Path, out: Path, name: str) -> TrainConfig:
    return TrainConfig(data=str(data), model="n", img_size=64, epochs=2, batch=2, workers=0, device="cpu",
                       out=str(out), name=name, val_every=10)


def assert_same_state(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"]
    assert a["scheduler"] == b["scheduler"]
    assert a["ema"]["updates"] == b["ema"]["updates"] > 0
    assert a["last_opt_step"] == b["last_opt_step"]
    for key in ("model",):
        for k in a[key]:
            torch.testing.assert_close(a[key][k], b[key][k], rtol=0, atol=1e-6, msg=f"{key}.{k}")
    for k in a["ema"]["model"]:
        torch.testing.assert_close(a["ema"]["model"][k], b["ema"]["model"][k], rtol=0, atol=1e-6, msg=f"ema.{k}")
    oa, ob = a["optimizer"], b["optimizer"]
    assert [{k: v for k, v in g.items() if k != "params"} for g in oa["param_groups"]] == \
        [{k: v for k, v in g.items() if k != "params"} for g in ob["param_groups"]]
    assert oa["state"].keys() == ob["state"].keys()
    for i in oa["state"]:
        torch.testing.assert_close(oa["state"][i]["momentum_buffer"], ob["state"][i]["momentum_buffer"],
                                   rtol=0, atol=1e-6)
    assert [r["epoch"] for r in a["history"]] == [r["epoch"] for r in b["history"]]


def test_interrupted_run_resumes_to_the_same_state(data: Path, tmp_path: Path, one_thread) -> None:
    reference = train(_cfg(data, tmp_path, "ref"))
    assert reference.epochs_done == 2 and reference.best is not None

    def stop(epoch: int, batch: int) -> None:
        if (epoch, batch) == (1, 1):  # in the middle of the second epoch
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(_cfg(data, tmp_path, "cut"), on_batch_end=stop)
    cut = tmp_path / "cut"
    assert load_state(cut / "last.pt")["epoch"] == 0  # only the first epoch was saved
    resumed = train(resume=cut)
    assert resumed.run_dir == cut
    assert_same_state(load_state(tmp_path / "ref" / "last.pt"), load_state(cut / "last.pt"))
    assert (cut / "results.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert (cut / "last.safetensors").is_file() and (cut / "results.png").is_file()
    assert (cut / "env.json").read_text().count('"resumed_from_epoch": 0') == 1

    with pytest.raises(ConfigError, match="already finished"):
        train(resume=cut)
    with pytest.raises(ConfigError, match="already exists"):
        train(_cfg(data, tmp_path, "cut"))


_CHILD = """
import sys, time, pathlib, torch
torch.set_num_threads(1)
from asfyolo_rt.train.config import TrainConfig
from asfyolo_rt.train.trainer import train
cfg = TrainConfig.from_yaml(sys.argv[1])
marker = pathlib.Path(sys.argv[2])
def hook(epoch, batch):
    if (epoch, batch) == (1, 1):
        marker.write_text("waiting")
        time.sleep(600)
train(cfg, on_batch_end=hook)
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_the_cli(data: Path, tmp_path: Path, one_thread, cli) -> None:
    cfg = _cfg(data, tmp_path, "killed")
    (tmp_path / "cfg.yaml").write_text(cfg.to_yaml())
    marker = tmp_path / "marker"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD), str(tmp_path / "cfg.yaml"), str(marker)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not marker.exists():
            if child.poll() is not None:
                raise AssertionError(child.stdout.read().decode())  # type: ignore[union-attr]
            if time.time() > deadline:
                raise AssertionError("the child never reached epoch 2")
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert load_state(tmp_path / "killed" / "last.pt")["epoch"] == 0
    r = cli("train", "--resume", tmp_path / "killed", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    train(_cfg(data, tmp_path, "ref"))
    assert_same_state(load_state(tmp_path / "ref" / "last.pt"), load_state(tmp_path / "killed" / "last.pt"))

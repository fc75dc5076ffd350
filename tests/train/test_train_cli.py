"""`asfyolo-rt train` end to end on tiny data: run folder contents, bad labels, options reaching the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from asfyolo_rt.model.weights import load_checkpoint

from ._synthetic import write_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("blobs"), n_train=4, n_val=2)


def test_train_writes_a_complete_run_folder(cli, data: Path, tmp_path: Path) -> None:
    r = cli("train", "--data", data, "--model", "n", "--img-size", "64", "--epochs", "2", "--batch", "2",
            "--device", "cpu", "--workers", "0", "--out", tmp_path, "--name", "run", "--box-loss", "eiou",
            "--optimizer", "adamw", "--cos-lr", "--seed", "3", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    run = tmp_path / "run"
    assert Path(out["run_dir"]) == run and out["epochs"] == 2
    for name in ("config.yaml", "env.json", "autoanchor.json", "last.pt", "last.safetensors", "best.safetensors",
                 "results.csv", "results.png"):
        assert (run / name).is_file(), name
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["loss"]["box_loss"] == "eiou" and cfg["optim"]["optimizer"] == "adamw" and cfg["optim"]["cos_lr"]
    assert cfg["seed"] == 3 and cfg["img_size"] == 64
    header, *rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and "train/seg_loss" in header and "metrics/mask_map" in header and "time_s" in header
    model, mcfg = load_checkpoint(run / "best.safetensors")
    assert mcfg.img_size == 64 and mcfg.names == {0: "a", 1: "b", 2: "c", 3: "d"} and model.nc == 4
    anchors = json.loads((run / "autoanchor.json").read_text())["anchors_px"]
    flat = [v for level in mcfg.anchors for v in level]  # the checkpoint carries the run's anchors
    assert flat == pytest.approx([v for a in anchors for v in a], abs=1e-3)
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 1 and "torch" in env


def test_bad_labels_are_refused_unless_skipped(cli, data: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    label = min((bad / "labels" / "train").glob("*.txt"))
    label.write_text(label.read_text() + "0 0.5 0.5 1.7\n")
    args = ["train", "--data", bad, "--img-size", "64", "--epochs", "1", "--batch", "2", "--device", "cpu",
            "--workers", "0", "--out", tmp_path / "runs"]
    r = cli(*args, "--name", "refused")
    assert r.exit_code == 1
    assert label.name in r.stderr or label.name in r.stdout
    r = cli(*args, "--name", "skipped", "--skip-bad-labels", "--noautoanchor")
    assert r.exit_code == 0, r.stdout + r.stderr


def test_unknown_hyp_key_is_a_one_line_error(cli, data: Path, tmp_path: Path) -> None:
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("optim:\n  lr_0: 0.1\n")
    r = cli("train", "--data", data, "--hyp", hyp, "--out", tmp_path)
    assert r.exit_code == 1 and "did you mean 'lr0'" in r.stderr


def test_resume_needs_a_run_folder(cli, tmp_path: Path) -> None:
    r = cli("train", "--resume", tmp_path)
    assert r.exit_code == 1 and "no last.pt" in r.stderr


def test_resume_refuses_other_options(cli, tmp_path: Path) -> None:
    r = cli("train", "--resume", tmp_path, "--epochs", "5")
    assert r.exit_code == 1 and "epochs" in r.stderr


def test_hyp_values_survive_unless_given_on_the_command_line(cli, data: Path, tmp_path: Path, monkeypatch) -> None:
    from asfyolo_rt.train import trainer

    seen = {}

    def fake_train(cfg, **kw):
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(trainer, "train", fake_train)
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("epochs: 7\noptim: {optimizer: adamw, lrf: 0.2}\naugment: {mosaic: 0.5}\n")
    cli("train", "--data", data, "--hyp", hyp, "--epochs", "3")
    cfg = seen["cfg"]
    assert cfg.epochs == 3 and cfg.optim.optimizer == "adamw" and cfg.optim.lrf == 0.2 and cfg.augment.mosaic == 0.5

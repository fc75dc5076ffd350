"""Checkpoint round trip (safetensors + JSON config) and the official `.pt` importer."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from asfyolo_rt.errors import CheckpointError
from asfyolo_rt.model import build_model
from asfyolo_rt.model.weights import (
    ModelConfig,
    config_of,
    import_official,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    state_dict_to_official,
)


def _randomised(variant: str = "n", nc: int = 1) -> nn.Module:
    torch.manual_seed(1)
    m = build_model(variant, nc)
    with torch.no_grad():
        for name, b in m.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.uniform_(-0.2, 0.2)
    return m.eval()


def test_round_trip(tmp_path: Path) -> None:
    m = _randomised()
    m.head.set_anchors(torch.tensor([[[5, 6], [7, 8], [9, 10]], [[20, 21], [22, 23], [24, 25]], [[50, 60], [70, 80], [90, 99]]], dtype=torch.float32))
    cfg = config_of(m, names={0: "nucleus"}, img_size=320, provenance={"run": "test"})
    path = save_checkpoint(m, tmp_path / "m.safetensors", cfg)
    m2, cfg2 = load_checkpoint(path)
    assert cfg2 == cfg
    assert cfg2.anchors[0] == (5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x)[0], m2(x)[0])
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_half_checkpoint_is_smaller_and_close(tmp_path: Path) -> None:
    m = _randomised()
    cfg = config_of(m)
    full = save_checkpoint(m, tmp_path / "f.safetensors", cfg)
    half = save_checkpoint(m, tmp_path / "h.safetensors", cfg, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    m2, _ = load_checkpoint(half)
    assert next(m2.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x)[1], m2(x)[1], atol=2e-2)


def test_missing_and_corrupt_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_checkpoint(bad)


def test_shape_mismatch_lists_keys(tmp_path: Path) -> None:
    m = _randomised("n", 1)
    path = save_checkpoint(m, tmp_path / "m.safetensors", config_of(m))
    from safetensors.torch import load_file

    state = load_file(path)
    from asfyolo_rt.model.weights import load_state

    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_state(build_model("n", 3), state, path)


def _write_official_style(model: nn.Module, path: Path, nc: int) -> None:
    """Pickle a module tree with the official class paths and layer-indexed keys, as YOLOv5 v7.0 saves it.

    The classes live in throw-away modules named like upstream's (models.yolo, models.common) that are
    removed from sys.modules before loading: a loader that imported pickled classes would fail.
    """
    fake = {n: types.ModuleType(n) for n in ("models", "models.yolo", "models.common")}

    def cls(mod: str, name: str) -> type:
        c = type(name, (nn.Module,), {"__module__": mod})
        setattr(fake[mod], name, c)
        return c

    classes: dict[str, type] = {}
    sys.modules.update(fake)
    try:
        root = cls("models.yolo", "SegmentationModel")()
        seq = nn.Sequential()
        root.model = seq
        root.names = {0: "cell"} if nc == 1 else {i: f"c{i}" for i in range(nc)}
        for key, value in state_dict_to_official(model).items():
            parts = key.split(".")
            mod: nn.Module = root
            for depth, p in enumerate(parts[:-1]):
                if p not in mod._modules:
                    cname = "Segment" if depth == 1 and p == "26" else f"Layer{'_'.join(parts[1:depth + 1])}"
                    if cname not in classes:
                        classes[cname] = cls("models.common", cname)
                    child = classes[cname]()
                    mod.add_module(p, child)
                mod = mod._modules[p]
            leaf = parts[-1]
            if leaf in ("running_mean", "running_var", "num_batches_tracked", "anchors"):
                mod.register_buffer(leaf, value.clone())
            else:
                mod.register_parameter(leaf, nn.Parameter(value.clone().half()))
        seq._modules["26"].nc = nc
        torch.save({"epoch": -1, "model": None, "ema": root, "git": {"a": 1}}, path)
    finally:
        for n in fake:
            sys.modules.pop(n, None)


def test_import_official_layout_gives_identical_outputs(tmp_path: Path) -> None:
    m = _randomised("n", 1)
    path = tmp_path / "best.pt"
    _write_official_style(m, path, nc=1)
    assert "models.yolo" not in sys.modules
    imported, cfg = import_official(path, variant="n")
    assert "models.yolo" not in sys.modules  # the importer never imported the pickled classes
    assert cfg.nc == 1 and cfg.names == {0: "cell"}
    x = torch.rand(1, 3, 64, 96)
    m_half = _randomised("n", 1)
    # the official file stores FP16 parameters (as YOLOv5 does); compare against the same rounding
    with torch.no_grad():
        for p in m_half.parameters():
            p.copy_(p.half().float())
        ref_pred, ref_protos = m_half(x)
        pred, protos = imported(x)
    assert torch.allclose(pred, ref_pred, atol=1e-4)
    assert torch.allclose(protos, ref_protos, atol=1e-5)


def test_import_rejects_foreign_checkpoint(tmp_path: Path) -> None:
    torch.save({"model": {"not": "a module"}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError):
        import_official(tmp_path / "x.pt")
    (tmp_path / "y.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        import_official(tmp_path / "y.pt")


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    text = ModelConfig().to_json().replace('"nc"', '"ncc"')
    with pytest.raises(CheckpointError, match="unknown config keys"):
        ModelConfig.from_json(text, tmp_path / "x")

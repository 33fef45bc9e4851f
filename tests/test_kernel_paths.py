"""The three kernel paths (tch, portable core, torch ops) agree; the portable path works on
the CPU tensor's own memory; the tch module loads only next to its torch; show_config and
UCAG_KERNELS say and do what they claim."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import ucag
from ucag import _core, kernels, runtime

HAS_TCH = runtime.tch_module() is not None  # None under UCAG_KERNELS=portable
PATHS = ["portable", "torch ops"] + (["tch"] if HAS_TCH else [])


@pytest.fixture
def force_path(monkeypatch):
    """Run every tensor call on one path (tch, portable or torch ops) within the test."""

    def force(path: str) -> None:
        monkeypatch.setattr(kernels, "tensor_path", lambda tensor: path)

    return force


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def case(seed: int):
    gen = torch.Generator().manual_seed(seed)
    H, W = (int(v) for v in torch.randint(40, 200, (2,), generator=gen))
    units = [6, 1, 2, 3, 4, 5][seed % 6]
    grid = ucag.Grid((H, W), units=units, patch_size=(H, W) if units == 1 else None)
    images = torch.rand(2, 3, H, W, generator=gen)
    rows = 2 * grid.num_patches
    maps = torch.randn(rows, 9 + seed, 7 + seed, generator=gen)
    logits = torch.randn(rows, 50, generator=gen) * 3
    targets = torch.randint(0, 50, (rows,), generator=gen)
    return grid, images, maps, logits, targets


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(6))
def test_paths_agree(force_path, seed, dtype):
    grid, images, maps, logits, targets = case(seed)
    images, maps, logits = images.to(dtype), maps.to(dtype), logits.to(dtype)
    results = {}
    for path in PATHS:
        force_path(path)
        weights = ucag.confidence(logits, targets)
        results[path] = (
            ucag.unfold(images, grid),
            weights,
            ucag.fold(maps, weights, grid),
            ucag.confidence(logits, targets.tolist(), "prob"),
            ucag.fold(maps, weights, grid, "cosine"),
            ucag.fold(maps, weights, grid, "linear"),
        )
    reference = results[PATHS[-1]]
    for path, outputs in results.items():
        for got, expected in zip(outputs, reference, strict=True):
            assert got.dtype == dtype and got.shape == expected.shape
            assert relative_error(got, expected) <= 1e-5, (path, relative_error(got, expected))


def test_torch_ops_equal_the_tch_kernels_bit_for_bit(force_path):
    if not HAS_TCH:
        pytest.skip("no tch module for this torch")
    grid, images, maps, logits, targets = case(4)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        outputs = {}
        for path in ("tch", "torch ops"):
            force_path(path)
            weights = ucag.confidence(logits.to(dtype), targets)
            outputs[path] = (
                ucag.unfold(images.to(dtype), grid),
                weights,
                *(ucag.fold(maps.to(dtype), weights, grid, w) for w in ("box", "linear", "cosine")),
            )
        for a, b in zip(outputs["tch"], outputs["torch ops"], strict=True):
            assert a.dtype == dtype and torch.equal(a, b)


def test_portable_path_reads_and_returns_the_tensors_own_memory(monkeypatch, force_path):
    """The portable path hands the kernel a view of the tensor's storage (also when it is
    strided or requires grad) and wraps the kernel's output without copying it."""
    force_path("portable")
    seen: dict[str, list[int]] = {"in": [], "out": []}

    def spy(name):
        original = getattr(_core, name)

        def wrapper(*args, **kwargs):
            arrays = [a for a in args if isinstance(a, np.ndarray)]
            seen["in"] += [a.__array_interface__["data"][0] for a in arrays]
            out = original(*args, **kwargs)
            seen["out"] += [a.__array_interface__["data"][0] for a in (out if isinstance(out, tuple) else (out,))]
            return out

        monkeypatch.setattr(_core, name, wrapper)

    for name in ("unfold", "fold", "confidence"):
        spy(name)
    grid = ucag.Grid((48, 64), units=3)
    base = torch.randn(2, 3, 64, 48, requires_grad=True)
    images = base.transpose(2, 3)  # strided, requires grad
    patches = ucag.unfold(images, grid)
    assert seen["in"] == [images.data_ptr()] and seen["out"] == [patches.data_ptr()]
    maps = torch.randn(18, 9, 18)[:, :, ::2]
    weights = torch.rand(18, dtype=torch.float64)
    seen["in"].clear()
    seen["out"].clear()
    folded = ucag.fold(maps, weights, grid)
    assert seen["in"] == [maps.data_ptr(), weights.data_ptr()] and seen["out"] == [folded.data_ptr()]
    logits = torch.randn(18, 10)
    seen["in"].clear()
    seen["out"].clear()
    w = ucag.confidence(logits, torch.arange(18) % 10)
    assert seen["in"] == [logits.data_ptr()] and seen["out"] == [w.data_ptr()]
    seen["in"].clear()
    seen["out"].clear()
    p, w = ucag.confidence(logits, torch.arange(18) % 10, "prob", return_probabilities=True)
    assert seen["in"] == [logits.data_ptr()] and seen["out"] == [p.data_ptr(), w.data_ptr()]
    assert p.data_ptr() != w.data_ptr()
    assert not patches.requires_grad and patches.shape == (18, 3, *grid.scaled_size)


def test_the_default_dispatch(monkeypatch):
    """auto: CPU float32/64 -> portable (the faster CPU path), other cpu/cuda tensors -> tch
    where it matches; tch: every cpu/cuda tensor -> tch; portable: never tch."""
    monkeypatch.setenv("UCAG_KERNELS", "auto")
    cpu32, cpu16, meta = torch.zeros(1), torch.zeros(1, dtype=torch.bfloat16), torch.zeros(1, device="meta")
    assert kernels.tensor_path(cpu32) == "portable"
    assert kernels.tensor_path(cpu16) == ("tch" if runtime.tch_module() is not None else "torch ops")
    assert kernels.tensor_path(meta) == "torch ops"
    if runtime.tch_module() is not None:
        monkeypatch.setenv("UCAG_KERNELS", "tch")
        assert kernels.tensor_path(cpu32) == "tch" and kernels.tensor_path(meta) == "torch ops"


def test_half_precision_on_the_cpu_without_tch_uses_torch_ops(monkeypatch):
    monkeypatch.setenv("UCAG_KERNELS", "portable")
    assert kernels.tensor_path(torch.zeros(1, dtype=torch.float32)) == "portable"
    assert kernels.tensor_path(torch.zeros(1, dtype=torch.bfloat16)) == "torch ops"
    grid = ucag.Grid(40, units=2)
    x = torch.rand(1, 3, 40, 40, dtype=torch.bfloat16)
    expected = torch.nn.functional.interpolate(
        x[:, :, :22, :22], size=grid.scaled_size, mode="bicubic", align_corners=False
    )
    assert torch.equal(ucag.unfold(x, grid)[0], expected[0])


def test_errors_name_the_argument_on_every_path(force_path):
    grid = ucag.Grid((32, 40), units=3)
    for path in PATHS:
        force_path(path)
        with pytest.raises(ValueError, match="images"):
            ucag.unfold(torch.rand(2, 3, 40, 32), grid)
        with pytest.raises(ValueError, match="maps"):
            ucag.fold(torch.full((18, 7, 7), float("nan")), torch.ones(18), grid)
        with pytest.raises(ValueError, match="targets"):
            ucag.confidence(torch.rand(2, 10), [1, 10])
        with pytest.raises(ValueError, match="mode"):
            ucag.confidence(torch.rand(2, 10), [1, 2], mode="softmax")
        with pytest.raises(TypeError, match="grid"):
            ucag.fold(torch.rand(18, 7, 7), torch.ones(18), (32, 40))


def test_explainer_maps_agree_across_paths(force_path, sample_model, photos):
    """UCAG(GradCAM) on the sample model and a real photo: the same map on every path."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    sm, x = sample_model, photos["chelsea"]
    maps = {}
    for path in PATHS:
        force_path(path)
        cam = pgc.GradCAM(model=sm.model, target_layers=[sm.target_layer])
        with ucag.UCAG(cam, units=3, batch_size=9) as explainer:
            maps[path] = explainer.explain(x, [285])
    for path in PATHS:
        assert relative_error(maps[path].raw, maps["portable"].raw) <= 1e-5, path
        assert relative_error(maps[path].weights, maps["portable"].weights) <= 1e-5, path


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def test_forced_portable_never_loads_the_tch_module():
    code = "import sys, torch, ucag\nucag.fold(torch.rand(36, 5, 5), torch.ones(36), ucag.Grid(64))\nucag.show_config()\nprint('loaded' if 'ucag._tch' in sys.modules else 'never loaded')"
    done = run_python(code, UCAG_KERNELS="portable")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("never loaded")
    assert "CPU float32/64    portable" in done.stdout and "UCAG_KERNELS=portable" in done.stdout
    assert "CUDA tensors      torch ops" in done.stdout


def test_show_config_names_the_path(capsys):
    ucag.show_config()
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out
    config = runtime.kernel_config()
    forced_tch = runtime.requested_kernels() == "tch"
    assert config.paths["numpy arrays"] == "portable"
    assert config.paths["CPU float32/64"] == ("tch" if forced_tch else "portable")
    assert config.paths["CPU float16/bf16"] == config.paths["CUDA tensors"] == ("tch" if HAS_TCH else "torch ops")
    assert config.tch_loaded == HAS_TCH and config.tch_reason in out
    for kind, path in config.paths.items():
        assert f"  {kind:17s} {path:10s} {config.why[kind]}" in out


def test_a_tch_module_for_another_torch_is_never_imported(tmp_path, monkeypatch):
    """A build record for another torch series: the probe refuses before importing and says
    which torch each side has."""
    monkeypatch.setenv("UCAG_KERNELS", "auto")
    record = tmp_path / "_tch_build.json"
    record.write_text(json.dumps({"torch": "2.4.1+cpu", "series": "2.4", "cxx11_abi": True}))
    monkeypatch.setattr(runtime, "_BUILD_RECORD", record)
    imported = []
    monkeypatch.setattr(runtime.importlib, "import_module", lambda name: imported.append(name))
    runtime._probe_tch.cache_clear()
    try:
        probe = runtime._probe_tch()
        assert probe.module is None and imported == []
        assert "2.4" in probe.reason and torch.__version__ in probe.reason
        assert kernels.tensor_path(torch.zeros(1)) == "portable"
        assert kernels.tensor_path(torch.zeros(1, dtype=torch.float16)) == "torch ops"
        monkeypatch.setenv("UCAG_KERNELS", "tch")
        with pytest.raises(RuntimeError, match="UCAG_KERNELS=tch.*2.4"):
            ucag.unfold(torch.rand(1, 1, 64, 64), ucag.Grid(64))
    finally:
        runtime._probe_tch.cache_clear()


def test_unknown_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("UCAG_KERNELS", "fastest")
    with pytest.raises(ValueError, match="UCAG_KERNELS"):
        ucag.unfold(torch.rand(1, 1, 64, 64), ucag.Grid(64))

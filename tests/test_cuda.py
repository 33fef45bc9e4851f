"""The tch kernels on CUDA tensors: same results as on the CPU, outputs stay on the GPU.

Skipped without CUDA. On a GPU machine: ``python -m pytest -q tests/test_cuda.py``.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import spec_reference as ref
import ucag

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def case():
    gen = torch.Generator().manual_seed(0)
    grid = ucag.Grid((224, 200), units=6)
    images = torch.rand(3, 3, 224, 200, generator=gen)
    maps = torch.randn(3 * grid.num_patches, 11, 11, generator=gen)
    logits = torch.randn(3 * grid.num_patches, 1000, generator=gen) * 3
    targets = torch.randint(0, 1000, (3 * grid.num_patches,), generator=gen)
    return grid, images, maps, logits, targets


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_ranks_the_pixels_as_fp32(precision):
    """UCAG(GradCAM) under autocast on the GPU (docs/algorithm.md §10): float32 maps on the
    GPU, the model's parameters untouched, the map's ranking as in float32."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    data = pytest.importorskip("ucag.data")
    from scipy.stats import spearmanr

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    sm = data.load_sample_model("cuda")
    x = sm.preprocess(data.sample_image("chelsea").rgb)
    cam = pgc.GradCAM(model=sm.model, target_layers=[sm.target_layer])
    weights = {name: p.detach().clone() for name, p in sm.model.named_parameters()}
    fp32 = ucag.UCAG(cam).explain(x, [285])
    lowered = ucag.UCAG(cam, precision=precision).explain(x, [285])
    assert (lowered.precision, lowered.channels_last) == (precision, True)
    assert lowered.saliency.is_cuda and lowered.saliency.dtype == lowered.partials.dtype == torch.float32
    assert torch.isfinite(lowered.raw).all()
    rho = spearmanr(fp32.saliency.flatten().cpu().numpy(), lowered.saliency.flatten().cpu().numpy()).statistic
    assert rho >= 0.99, rho
    for name, p in sm.model.named_parameters():
        assert p.dtype == torch.float32 and p.is_contiguous() and torch.equal(p, weights[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_unfold_on_cuda(case, dtype):
    grid, images, *_ = case
    x = images.to("cuda", dtype)
    got = ucag.unfold(x, grid)
    assert got.is_cuda and got.dtype == dtype
    # bit for bit what F.interpolate does on the same device
    h, w = grid.patch_size
    expected = ref.unfold(x, ref.geometry(grid.image_size, grid.units, grid.patch_size, scaled=grid.scaled_size))
    assert torch.equal(got, expected)
    if dtype in (torch.float32, torch.float64):
        cpu = ucag.unfold(images.to(dtype), grid)
        torch.testing.assert_close(got.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_fold_and_confidence_on_cuda(case):
    grid, _, maps, logits, targets = case
    w_cpu = ucag.confidence(logits, targets)
    w_gpu = ucag.confidence(logits.cuda(), targets.cuda())
    assert w_gpu.is_cuda
    torch.testing.assert_close(w_gpu.cpu(), w_cpu, rtol=1e-6, atol=0)
    w_list = ucag.confidence(logits.cuda(), targets.tolist(), "prob")
    assert w_list.is_cuda
    folded = ucag.fold(maps.cuda(), w_gpu, grid)
    assert folded.is_cuda and folded.shape == (3, *grid.image_size)
    torch.testing.assert_close(folded.cpu(), ucag.fold(maps, w_cpu, grid), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(folded.cpu().numpy(), ucag.fold(maps.numpy(), w_cpu.numpy(), grid), rtol=1e-4, atol=1e-5)
    half = ucag.fold(maps.cuda().half(), w_gpu.half(), grid)
    assert half.is_cuda and half.dtype == torch.float16
    for window in ("linear", "cosine"):  # the tapered folds on the device (docs/algorithm.md §4.1)
        tapered = ucag.fold(maps.cuda(), w_gpu, grid, window)
        assert tapered.is_cuda
        torch.testing.assert_close(tapered.cpu(), ucag.fold(maps, w_cpu, grid, window), rtol=1e-5, atol=1e-5)


def test_cpu_cuda_mix_is_rejected(case):
    grid, images, maps, logits, targets = case
    with pytest.raises(ValueError, match="weights"):
        ucag.fold(maps.cuda(), torch.ones(maps.shape[0]), grid)
    with pytest.raises(ValueError, match="weights"):
        ucag.fold(maps, torch.ones(maps.shape[0], device="cuda"), grid)
    with pytest.raises(ValueError, match="targets"):
        ucag.confidence(logits.cuda(), targets)


def test_no_host_round_trip():
    """A 2 GiB CUDA batch is unfolded without growing host memory by its size."""
    import resource

    grid = ucag.Grid(224)
    x = torch.rand(64, 3, 224, 224, device="cuda")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = ucag.unfold(x, grid)
    torch.cuda.synchronize()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.is_cuda
    assert (after - before) * 1024 < out.numel() * 4 / 8  # far below one host copy
    expected = F.interpolate(x[:, :, 20:144, 40:164], size=grid.scaled_size, mode="bicubic", align_corners=False)
    assert torch.equal(out.view(64, 36, 3, 322, 322)[:, 8], expected)


def test_explainer_on_cuda_matches_cpu():
    """UCAG(GradCAM) on the sample model on CUDA: everything stays on the GPU and the raw
    map equals the CPU run (TF32 off, so both compute in float32)."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    data = pytest.importorskip("ucag.data")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rgb = data.sample_image("chelsea").rgb
    results = {}
    for device in ("cpu", "cuda"):
        sm = data.load_sample_model(device)
        x = sm.preprocess(rgb)  # on the CPU: the explainer moves it to the model's device
        cam = pgc.GradCAM(model=sm.model, target_layers=[sm.target_layer])
        results[device] = ucag.UCAG(cam, units=3, batch_size=4).explain(x, [285])
    gpu, cpu = results["cuda"], results["cpu"]
    assert gpu.truncated_backward and cpu.truncated_backward
    for t in (gpu.raw, gpu.saliency, gpu.partials, gpu.weights, gpu.probabilities):
        assert t.is_cuda
    err = ((gpu.raw.cpu() - cpu.raw).abs().max() / cpu.raw.abs().max()).item()
    assert err < 1e-3, err
    torch.testing.assert_close(gpu.weights.cpu(), cpu.weights, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_torch_ops_path_equals_the_tch_path_on_cuda(case, dtype, monkeypatch):
    """The path every other torch gets on CUDA (torch operations) against the tch kernels:
    the same ATen calls, so the same numbers; both stay on the GPU."""
    from ucag import kernels, runtime

    if runtime.tch_module() is None:
        pytest.skip("no tch module for this torch (or UCAG_KERNELS=portable)")
    grid, images, maps, logits, targets = case
    outputs = {}
    for path in ("tch", "torch ops"):
        monkeypatch.setattr(kernels, "tensor_path", lambda tensor, path=path: path)
        weights = ucag.confidence(logits.to("cuda", dtype), targets.cuda())
        outputs[path] = (
            ucag.unfold(images.to("cuda", dtype), grid),
            weights,
            ucag.fold(maps.to("cuda", dtype), weights, grid),
        )
    for a, b in zip(outputs["tch"], outputs["torch ops"], strict=True):
        assert a.is_cuda and b.is_cuda and a.dtype == dtype
        assert torch.equal(a, b) or ((a.double() - b.double()).abs().max() / b.double().abs().max()).item() <= 1e-5

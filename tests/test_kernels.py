"""unfold / confidence / fold against the independent reference of docs/algorithm.md, on torch and numpy."""

import numpy as np
import pytest
import torch

import spec_reference as ref
import ucag


def random_case(seed: int):
    """B in 1..4, non-square H x W in 32..300, units 1..8, several scales and map sizes."""
    rng = np.random.default_rng(seed)
    H, W = (int(v) for v in rng.integers(32, 301, size=2))
    units = int(rng.integers(1, 9))
    scale = float(rng.choice([0.8, 1.0, 1.7, 2.6]))
    patch = (H, W) if units == 1 else None
    grid = ucag.Grid((H, W), units=units, patch_size=patch, scale=scale)
    B = int(rng.integers(1, 5))
    sh, sw = grid.scaled_size
    map_size = [(7, 7), (11, 11), (int(rng.integers(2, 40)), int(rng.integers(2, 40))), (sh, sw)][seed % 4]
    return rng, grid, B, map_size


def reference_geometry(grid: ucag.Grid):
    return ref.geometry(grid.image_size, grid.units, grid.patch_size, scaled=grid.scaled_size)


def exact_path(t: torch.Tensor) -> bool:
    """The tch kernels and the torch-op path issue F.interpolate's ATen calls: bit for bit.
    The portable core computes the same taps in its own order: within rounding."""
    return ucag.kernels.tensor_path(t) != "portable"


def assert_close(actual, expected, rtol):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape
    # relative error against the map's own magnitude (maps cross zero, so no per-pixel rtol)
    scale = expected.abs().max().clamp_min(1e-30)
    err = ((actual - expected).abs().max() / scale).item()
    assert err <= rtol, f"relative error {err:.3g} > {rtol}"


@pytest.mark.parametrize("seed", range(24))
def test_unfold_matches_reference(seed):
    rng, grid, B, _ = random_case(seed)
    H, W = grid.image_size
    x = torch.from_numpy(rng.standard_normal((B, 3, H, W)).astype(np.float32))
    expected = ref.unfold(x, reference_geometry(grid))
    got = ucag.unfold(x, grid)
    assert got.shape == (B * grid.num_patches, 3, *grid.scaled_size)
    assert got.dtype == torch.float32 and got.device == x.device
    assert_close(got, expected, 1e-5)
    if exact_path(x):
        assert torch.equal(got, expected)
    got_np = ucag.unfold(x.numpy(), grid)
    assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float32
    assert_close(got_np, expected, 1e-5)


@pytest.mark.parametrize("seed", range(24))
def test_fold_matches_reference(seed):
    rng, grid, B, (mh, mw) = random_case(seed)
    rows = B * grid.num_patches
    maps = torch.from_numpy(rng.standard_normal((rows, mh, mw)).astype(np.float32))
    weights = torch.from_numpy(rng.uniform(1.0, np.e, rows).astype(np.float32))
    # Against the float64 result: float32 resampling weights of source coordinates near
    # 300 px are only good to ~3e-5 relative, and implementations round them differently
    # (torch 2.15's own float32 fold is 3.9e-5 from float64 on seed 19, 1.5e-5 from ours).
    expected = ref.fold(maps.double(), weights.double(), reference_geometry(grid))
    got = ucag.fold(maps, weights, grid)
    assert got.shape == (B, *grid.image_size) and got.dtype == torch.float32
    assert_close(got, expected, 5e-5)
    got4 = ucag.fold(maps[:, None], weights, grid)
    assert torch.equal(got4, got)
    got_np = ucag.fold(maps.numpy(), weights.numpy(), grid)
    assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float32
    assert_close(got_np, expected, 5e-5)


def test_float64_paths_agree_tightly():
    rng, grid, B, (mh, mw) = random_case(5)
    H, W = grid.image_size
    x = torch.from_numpy(rng.standard_normal((B, 2, H, W)))
    g = reference_geometry(grid)
    assert_close(ucag.unfold(x, grid), ref.unfold(x, g), 0 if exact_path(x) else 1e-12)
    assert_close(ucag.unfold(x.numpy(), grid), ref.unfold(x, g), 1e-12)
    maps = torch.from_numpy(rng.standard_normal((B * grid.num_patches, mh, mw)))
    w = torch.from_numpy(rng.uniform(1, 2, B * grid.num_patches))
    assert ucag.fold(maps, w, grid).dtype == torch.float64
    assert_close(ucag.fold(maps, w, grid), ref.fold(maps, w, g), 1e-12)
    assert_close(ucag.fold(maps.numpy(), w.numpy(), grid), ref.fold(maps, w, g), 1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_unfold_and_fold(dtype):
    grid = ucag.Grid((40, 56), units=3)
    x = torch.rand(2, 3, 40, 56)
    expected = ref.unfold(x.to(dtype), reference_geometry(grid))
    got = ucag.unfold(x.to(dtype), grid)
    assert got.dtype == dtype
    assert torch.equal(got, expected)
    maps = torch.rand(18, 7, 7)
    w = torch.rand(18) + 1
    folded = ucag.fold(maps.to(dtype), w.to(dtype), grid)
    assert folded.dtype == dtype
    # accumulated in float32, rounded once: within half precision of the float32 result
    expected = ref.fold(maps.to(dtype).float(), w.to(dtype).float(), reference_geometry(grid))
    assert_close(folded, expected, 1e-2)


def test_non_contiguous_inputs():
    grid = ucag.Grid((48, 64), units=4)
    base = torch.randn(2, 3, 64, 48)
    x = base.transpose(2, 3)  # (2, 3, 48, 64), not contiguous
    assert not x.is_contiguous()
    expected = ref.unfold(x.contiguous(), reference_geometry(grid))
    tolerance = 0 if exact_path(x) else 1e-5
    assert_close(ucag.unfold(x, grid), expected, tolerance)
    assert_close(ucag.unfold(x.contiguous(memory_format=torch.channels_last), grid), expected, tolerance)
    assert_close(ucag.unfold(x.numpy(), grid), expected, 1e-5)  # a strided numpy view
    maps = torch.randn(32, 9, 2 * 9)[:, :, ::2]
    w = torch.rand(64)[::2]
    expected = ref.fold(maps.contiguous(), w.contiguous(), reference_geometry(grid))
    assert_close(ucag.fold(maps, w, grid), expected, 1e-5)
    assert_close(ucag.fold(maps.numpy(), w.numpy(), grid), expected, 1e-5)


def test_unfold_does_not_track_gradients_or_touch_the_input():
    grid = ucag.Grid(64, units=2)
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    before = x.detach().clone()
    out = ucag.unfold(x, grid)
    assert not out.requires_grad
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize("mode", ["exp", "prob", "uniform"])
def test_confidence_matches_softmax(mode):
    torch.manual_seed(0)
    logits = torch.randn(37, 1000) * 4
    targets = torch.randint(0, 1000, (37,))
    expected = ref.confidence(logits, targets, mode)
    got = ucag.confidence(logits, targets, mode)
    assert got.shape == (37,) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(ucag.confidence(logits, targets.tolist(), mode), expected, rtol=1e-6, atol=0)
    got_np = ucag.confidence(logits.numpy(), targets.tolist(), mode)
    np.testing.assert_allclose(got_np, expected.numpy(), rtol=1e-6)
    if mode == "exp":
        torch.testing.assert_close(got, torch.softmax(logits, 1).gather(1, targets[:, None])[:, 0].exp())


def test_confidence_default_is_exp_and_float64():
    logits = torch.randn(4, 10, dtype=torch.float64)
    t = [1, 2, 3, 4]
    got = ucag.confidence(logits, t)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.softmax(logits, 1)[range(4), t].exp())


@pytest.mark.parametrize("window", ["linear", "cosine"])
@pytest.mark.parametrize("seed", range(0, 24, 3))
def test_tapered_fold_matches_reference(seed, window):
    rng, grid, B, (mh, mw) = random_case(seed)
    rows = B * grid.num_patches
    maps = torch.from_numpy(rng.standard_normal((rows, mh, mw)))
    weights = torch.from_numpy(rng.uniform(1.0, np.e, rows))
    expected = ref.fold(maps, weights, reference_geometry(grid), window)
    for got in (
        ucag.fold(maps, weights, grid, window),
        torch.from_numpy(ucag.fold(maps.numpy(), weights.numpy(), grid, window)),
    ):
        assert got.shape == (B, *grid.image_size) and got.dtype == torch.float64
        assert_close(got, expected, 1e-12)


def test_box_is_the_default_fold_and_the_window_sums_are_the_coverage():
    rng, grid, B, (mh, mw) = random_case(5)
    maps = torch.from_numpy(rng.standard_normal((B * grid.num_patches, mh, mw)).astype(np.float32))
    weights = torch.rand(B * grid.num_patches) + 1
    assert torch.equal(ucag.fold(maps, weights, grid, "box"), ucag.fold(maps, weights, grid))
    rows, columns, row_sums, column_sums = grid.fold_weights("box")
    assert (rows == 1).all() and (columns == 1).all()
    assert np.array_equal(np.outer(row_sums, column_sums), grid.coverage())
    rows, columns, row_sums, column_sums = grid.fold_weights("cosine")
    assert rows.shape == (grid.units, grid.patch_size[0]) and columns.shape == (grid.units, grid.patch_size[1])
    assert ((rows > 0) & (rows <= 1)).all() and (row_sums > 0).all() and row_sums.shape == (grid.image_size[0],)


def test_a_tapered_fold_removes_the_seams_of_a_real_gradcam_map(sample_model, photos):
    """UCAG(Grad-CAM) on a real photo: the same partial maps folded with the paper's box
    window show steps at the patch borders (seam score well above 1); a tapered window
    does not (about 1)."""
    from pytorch_grad_cam import GradCAM

    from ucag.eval.metrics import seam_score

    sm, x = sample_model, photos["chelsea"]
    with GradCAM(sm.model, [sm.target_layer]) as cam, ucag.UCAG(cam, model=sm.model) as explainer:
        grid = explainer.grid_for((224, 224))
        targets = torch.tensor([285])
        patches = explainer.attribute_patches(x, grid, targets)
        seams = {
            w: seam_score(explainer.conquer(patches, grid, targets, fold=w).raw, grid).values[0]
            for w in ("box", "linear", "cosine")
        }
    assert seams["box"] > 1.5, seams
    assert seams["linear"] < 1.2 and seams["cosine"] < 1.2, seams


def test_bad_fold_window_is_an_error_on_every_kind():
    grid = ucag.Grid((32, 32), units=2)
    maps, weights = torch.zeros(4, 5, 5), torch.ones(4)
    with pytest.raises(
        ValueError,
        match=r"^window: expected 'box', 'linear' or 'cosine' \('box' is the paper's fold\), got '(hann|gaussian)'$",
    ):
        ucag.fold(maps, weights, grid, "hann")
    with pytest.raises(
        ValueError,
        match=r"^window: expected 'box', 'linear' or 'cosine' \('box' is the paper's fold\), got '(hann|gaussian)'$",
    ):
        ucag.fold(maps.numpy(), weights.numpy(), grid, "hann")
    with pytest.raises(
        ValueError,
        match=r"^window: expected 'box', 'linear' or 'cosine' \('box' is the paper's fold\), got '(hann|gaussian)'$",
    ):
        grid.fold_weights("gaussian")
    with pytest.raises(
        ValueError, match=r"^fold: expected 'box', 'linear' or 'cosine' \('box' is the paper's fold\), got 'hann'$"
    ):
        ucag.UCAG(lambda patches, targets: patches[:, 0], model=torch.nn.Identity(), fold="hann")


def test_fold_with_weight_one_reconstructs_a_real_photo():
    """Unfold a real photo, fold its channels back with weight 1: close to the photo."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float() / 255  # (1, 3, 300, 451)
    grid = ucag.Grid(photo.shape[-2:])
    patches = ucag.unfold(photo, grid)
    ones = torch.ones(grid.num_patches)
    recon = torch.stack([ucag.fold(patches[:, c], ones, grid)[0] for c in range(3)])
    err = (recon - photo[0]).abs().mean().item()
    assert err < 0.01, err
    # a scale of 1 makes unfold a crop and fold its exact inverse
    grid1 = ucag.Grid(photo.shape[-2:], scale=1.0)
    patches = ucag.unfold(photo, grid1)
    recon = torch.stack([ucag.fold(patches[:, c], ones, grid1)[0] for c in range(3)])
    torch.testing.assert_close(recon, photo[0], rtol=1e-6, atol=1e-6)


MODES = ["exp", "prob", "uniform"]
TENSOR_PATHS = ["portable", "torch ops"] + (["tch"] if ucag.runtime.tch_module() is not None else [])


def confidence_case(dtype: torch.dtype, rows: int = 45, classes: int = 1000):
    gen = torch.Generator().manual_seed(11)
    logits = (torch.randn(rows, classes, generator=gen) * 4).to(dtype)
    targets = torch.randint(0, classes, (rows,), generator=gen)
    return logits, targets


def assert_one_call_equals_two(logits, targets, mode):
    """confidence(..., return_probabilities=True) == the separate "prob" and ``mode`` calls,
    bit for bit, as two arrays of their own in the logits' kind and dtype."""
    probabilities, weights = ucag.confidence(logits, targets, mode, return_probabilities=True)
    prob = ucag.confidence(logits, targets, "prob")
    weighted = ucag.confidence(logits, targets, mode)
    if isinstance(logits, np.ndarray):
        for got, expected in ((probabilities, prob), (weights, weighted)):
            assert isinstance(got, np.ndarray) and got.dtype == logits.dtype and got.shape == expected.shape
            assert np.array_equal(got, expected)
        assert not np.shares_memory(probabilities, weights)
    else:
        for got, expected in ((probabilities, prob), (weights, weighted)):
            assert got.dtype == logits.dtype and got.device == logits.device
            assert torch.equal(got, expected)
        assert probabilities.data_ptr() != weights.data_ptr()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_and_weights_in_one_call_numpy(mode, dtype):
    logits, targets = confidence_case(torch.float64)
    logits = logits.numpy().astype(dtype)
    assert_one_call_equals_two(logits, targets.tolist(), mode)
    assert_one_call_equals_two(logits, targets.numpy(), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_probabilities_and_weights_in_one_call_tensors(monkeypatch, mode, dtype):
    """On the path UCAG_KERNELS gives the tensor (CPU float32/64: tch under tch, portable
    under portable; CPU half: tch or torch ops), then forced onto every other path."""
    logits, targets = confidence_case(dtype)
    assert_one_call_equals_two(logits, targets, mode)
    assert_one_call_equals_two(logits, targets.tolist(), mode)
    for path in TENSOR_PATHS:
        if path == "portable" and dtype not in (torch.float32, torch.float64):
            continue  # numpy has no bfloat16; the portable path never sees half tensors
        monkeypatch.setattr(ucag.kernels, "tensor_path", lambda tensor, path=path: path)
        assert_one_call_equals_two(logits, targets, mode)
        assert_one_call_equals_two(logits, targets.tolist(), mode)


def test_return_probabilities_defaults_to_the_weights_alone():
    logits, targets = confidence_case(torch.float32, rows=6, classes=10)
    weights = ucag.confidence(logits, targets)
    assert isinstance(weights, torch.Tensor)
    assert torch.equal(weights, ucag.confidence(logits, targets, "exp", return_probabilities=False))
    pair = ucag.confidence(logits.numpy(), targets.tolist(), return_probabilities=True)
    assert isinstance(pair, tuple) and len(pair) == 2


def test_numpy_logits_take_a_tensor_of_targets():
    logits = np.random.default_rng(3).normal(size=(5, 7)).astype(np.float32)
    targets = [0, 6, 3, 3, 1]
    expected = ucag.confidence(logits, targets)
    np.testing.assert_array_equal(ucag.confidence(logits, torch.tensor(targets)), expected)
    probabilities, weights = ucag.confidence(logits, torch.tensor(targets), "prob", return_probabilities=True)
    np.testing.assert_array_equal(probabilities, weights)

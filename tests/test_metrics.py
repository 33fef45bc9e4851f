"""ucag.metrics against hand-worked cases and plain loop implementations of docs/algorithm.md §6."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from sklearn.metrics import average_precision_score
from torch import nn

import ucag.data
from ucag.eval import metrics


class MeanModel(nn.Module):
    """Two classes, logits (mean(x), 0): p(class 0) = sigmoid(mean of all pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        return torch.stack([m, torch.zeros_like(m)], dim=1) + self.dummy


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_deletion_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    saliency = torch.tensor([[[0.1, 0.9], [0.5, 0.5]]])  # order: 2 (idx 1), 3 (idx 2, tie: lower first), 4, 1
    r = metrics.deletion(MeanModel(), x, saliency, [0], step=1)
    means = [10 / 4, 8 / 4, 5 / 4, 1 / 4, 0.0]
    expected = [sigmoid(m) for m in means]
    np.testing.assert_allclose(r.curves[0], expected, rtol=1e-6)
    np.testing.assert_allclose(r.values[0], (sum(expected) - expected[0] / 2 - expected[-1] / 2) / 4, rtol=1e-6)
    assert r.mean == pytest.approx(float(r.values[0]))


def loop_reference(model, x, saliency, target, step, mode):
    """docs/algorithm.md §6, one forward per step: rank pixels, change `step` more per step."""
    _, C, H, W = x.shape
    order = sorted(range(H * W), key=lambda i: (-float(saliency.flatten()[i]), i))
    if mode == "deletion":
        start, end = x.clone(), torch.zeros_like(x)
    else:
        start, end = TF.gaussian_blur(x, [51, 51], [50.0, 50.0]), x.clone()
    T = math.ceil(H * W / step)
    current, scores = start.clone(), []
    for k in range(T + 1):
        if k > 0:
            for i in order[(k - 1) * step : k * step]:
                current[0, :, i // W, i % W] = end[0, :, i // W, i % W]
        with torch.no_grad():
            scores.append(float(torch.softmax(model(current), 1)[0, target]))
    s = np.array(scores)
    return s, (s.sum() - s[0] / 2 - s[-1] / 2) / T


@pytest.mark.batch_comparison
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_small_model_against_the_loop(mode):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 40)
    saliency = torch.rand(1, 32, 40).round(decimals=1)  # many ties
    r = getattr(metrics, mode)(MeanModel(), x, saliency, [0], step=300, batch_size=3)
    curve, area = loop_reference(MeanModel(), x, saliency[0], 0, 300, mode)
    assert r.curves.shape == (1, math.ceil(32 * 40 / 300) + 1)
    np.testing.assert_allclose(r.curves[0], curve, rtol=1e-5)
    np.testing.assert_allclose(r.values[0], area, rtol=1e-5)


@pytest.fixture(scope="module")
def sample(sample_model, photos):
    sm = sample_model
    x = torch.cat([photos["chelsea"], photos["coffee"]])
    g = torch.Generator().manual_seed(1)
    saliency = torch.nn.functional.interpolate(torch.rand(2, 1, 7, 7, generator=g), size=(224, 224), mode="bilinear")[
        :, 0
    ]
    return sm.model, x, saliency, [285, 967]


@pytest.mark.batch_comparison
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_sample_model_against_the_loop(sample, mode):
    model, x, saliency, targets = sample
    r = getattr(metrics, mode)(model, x, saliency.numpy(), torch.tensor(targets), batch_size=16)
    assert r.curves.shape == (2, 29)  # default step 8 * W = 1792 px: T = 28
    for b in range(2):
        curve, area = loop_reference(model, x[b : b + 1], saliency[b], targets[b], 8 * 224, mode)
        # batched (16) against one at a time: float32 rounding of the probabilities differs
        np.testing.assert_allclose(r.curves[b], curve, rtol=1e-3, atol=1e-5)
        assert r.values[b] == pytest.approx(area, rel=1e-3)


def test_pointing_game_tolerance_and_ties():
    s = torch.zeros(3, 40, 40)
    s[:, 10, 10] = 1.0
    m = torch.zeros(3, 40, 40, dtype=torch.bool)
    m[0, 10, 24] = True  # distance 14: hit
    m[1, 10, 25] = True  # distance 15: not < 15, miss
    s[2, 30, 30] = 1.0  # a tie: the first maximum in flat order, (10, 10), is the point
    m[2, 30, 30] = True
    r = metrics.pointing_game(s, m)
    assert r.values.tolist() == [1.0, 0.0, 0.0]
    m[2, 12, 12] = True
    assert metrics.pointing_game(s, m).values.tolist() == [1.0, 0.0, 1.0]
    assert metrics.pointing_game(s, m, tolerance=16).values.tolist() == [1.0, 1.0, 1.0]


def test_energy_pointing_game():
    photo = ucag.data.sample_image("voc")
    masks = torch.from_numpy(photo.masks[:2])
    r = metrics.energy_pointing_game(masks.float(), masks)
    np.testing.assert_allclose(r.values, [1.0, 1.0])
    s = torch.randn(2, *masks.shape[-2:])
    expected = [(s[b].clamp_min(0) * masks[b]).sum() / s[b].clamp_min(0).sum() for b in range(2)]
    np.testing.assert_allclose(metrics.energy_pointing_game(s, masks).values, expected, rtol=1e-5)
    assert metrics.energy_pointing_game(-s.abs(), masks).values.tolist() == [0.0, 0.0]


def test_map_density_by_hand():
    x = torch.full((1, 1, 2, 2), 2.0)
    s = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])  # scaled: 0, .25, .5, 1
    pos, neg = metrics.map_density(MeanModel(), x, s, [0])
    scaled = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert pos.values[0] == pytest.approx(sigmoid(float((2 * scaled).mean())) / float(scaled.mean()))
    assert neg.values[0] == pytest.approx(sigmoid(float((2 * (1 - scaled)).mean())) / float((1 - scaled).mean()))


def test_segmentation_scores_against_sklearn():
    photo = ucag.data.sample_image("voc")
    masks = torch.from_numpy(photo.masks[:3])
    g = torch.Generator().manual_seed(0)
    s = masks.float() * 0.5 + torch.rand(masks.shape, generator=g).round(decimals=2)
    r = metrics.segmentation_scores(s, masks)
    for b in range(3):
        expected = average_precision_score(masks[b].flatten().numpy(), s[b].flatten().numpy())
        assert r.ap[b] == pytest.approx(expected, rel=1e-9)
    binary = s > s.flatten(1).mean(1).view(-1, 1, 1)
    assert r.pixel_accuracy == pytest.approx(float((binary == masks).float().mean()))
    assert r.mean_ap == pytest.approx(float(r.ap.mean()))


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda: metrics.pointing_game(torch.rand(2, 8, 8), torch.ones(2, 8, 9, dtype=torch.bool)), "masks"),
        (lambda: metrics.pointing_game(torch.rand(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.bool)), "masks"),
        (lambda: metrics.energy_pointing_game(torch.full((1, 8, 8), float("nan")), torch.ones(1, 8, 8)), "saliency"),
        (lambda: metrics.deletion(MeanModel(), torch.rand(2, 1, 8, 8), torch.rand(3, 8, 8), [0, 0]), "saliency"),
        (lambda: metrics.deletion(MeanModel(), torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8), [0]), "targets"),
        (lambda: metrics.insertion(MeanModel(), torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8), [0], step=0), "step"),
        (lambda: metrics.map_density(MeanModel(), torch.rand(1, 1, 8, 8), torch.ones(1, 8, 8), [0]), "saliency"),
        (
            lambda: metrics.segmentation_scores(
                torch.rand(1, 8, 8), torch.ones(1, 8, 8, dtype=torch.bool), threshold="median"
            ),
            "threshold",
        ),
        (lambda: metrics.road(MeanModel(), torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8), [0], order="top"), "order"),
        (
            lambda: metrics.road(MeanModel(), torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8), [0], percentiles=[0, 50]),
            "percentiles",
        ),
        (
            lambda: metrics.road(MeanModel(), torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8), [0], percentiles=[]),
            "percentiles",
        ),
        (lambda: metrics.road(MeanModel(), torch.rand(1, 1, 8, 8), torch.rand(1, 7, 8), [0]), "saliency"),
    ],
)
def test_bad_input_raises(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_road_on_real_photos(sample):
    """ROAD through grad-cam's imputer: Grad-CAM's map beats a random map, its inverse
    scores exactly the other way round (same seeded noise), and the combined score is
    (LeRF - MoRF) / 2."""
    from pytorch_grad_cam import GradCAM

    model, x, _, targets = sample
    noise = torch.rand(2, 224, 224, generator=torch.Generator().manual_seed(0))  # a map of pixel noise
    with GradCAM(model, [model.head_activation]) as cam:
        gradcam = torch.as_tensor(cam(x, None))
    percentiles = [20, 50, 80]
    most = metrics.road(model, x, gradcam, targets, percentiles=percentiles)
    least = metrics.road(model, x, gradcam, targets, order="least", percentiles=percentiles)
    assert most.curves.shape == (2, 3) and np.allclose(most.values, most.curves.mean(axis=1))
    combined = metrics.road_combined(most, least)
    np.testing.assert_allclose(combined.values, (least.values - most.values) / 2)
    inverse = metrics.road(model, x, 1 - gradcam, targets, percentiles=percentiles)
    np.testing.assert_allclose(inverse.values, least.values, rtol=1e-5)
    random = metrics.road_combined(
        metrics.road(model, x, noise, targets, percentiles=percentiles),
        metrics.road(model, x, noise, targets, order="least", percentiles=percentiles),
    )
    assert (combined.values > random.values + 0.05).all(), (combined.values, random.values)
    assert (most.values < least.values).all()


def test_seam_score_of_steps_at_the_patch_borders():
    """A map that steps only where patches start or end scores high; a smooth ramp of the
    same range about 1; the score ignores scale."""
    from ucag import Grid
    from ucag.eval.metrics import seam_score

    grid = Grid((60, 80), units=3)
    (ph, pw), (oy, ox) = grid.patch_size, (grid.offsets_y, grid.offsets_x)
    yy, xx = torch.meshgrid(torch.arange(60.0), torch.arange(80.0), indexing="ij")
    ramp = (yy / 60 + xx / 80)[None]
    steps = torch.zeros(1, 60, 80)
    for o in ox[1:]:
        steps[..., o:] += 1.0
    for o in oy[1:]:
        steps[:, o:] += 1.0
    stepped = ramp + steps
    assert seam_score(ramp, grid).values[0] == pytest.approx(1.0, abs=0.05)
    assert seam_score(stepped, grid).values[0] > 10
    assert seam_score(stepped * 7.0, grid).values[0] == pytest.approx(seam_score(stepped, grid).values[0])
    # ends of patches are borders too
    ends = ramp.clone()
    ends[..., ox[0] + pw :] += 1.0
    assert seam_score(ends, grid).values[0] > 2
    assert ph < 60


def test_seam_score_refuses_undefined_cases():
    from ucag import Grid
    from ucag.eval.metrics import seam_score

    grid = Grid((40, 40), units=2)
    with pytest.raises(ValueError, match="^raw: maps \\[0\\] do not change"):
        seam_score(torch.ones(1, 40, 40), grid)
    with pytest.raises(ValueError, match="^raw: maps of \\(30, 40\\) px"):
        seam_score(torch.rand(1, 30, 40), grid)
    with pytest.raises(ValueError, match="^grid: its patches have no borders"):
        seam_score(torch.rand(1, 40, 40), Grid((40, 40), units=1, patch_size=(40, 40)))

"""Beyond the paper: the global-view fusion against an independent computation, and
ucag.tune on real photos (its recommendation reproduces its scores when run directly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM

import ucag
from ucag.eval import metrics
from ucag.eval.tuning import Setting, tune

STEP = 224 * 28  # 8 deletion/insertion steps


@pytest.fixture(scope="module")
def sample(sample_model, photos):
    sm = sample_model
    x = torch.cat([photos[n] for n in ("chelsea", "coffee", "astronaut", "rocket")])
    return sm, x


def reference_gradcam(sm, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM's raw map sum_k alpha_k A_k of one image, by hand, resized bilinearly."""
    store = {}
    handle = sm.target_layer.register_forward_hook(lambda m, i, o: store.update(a=o))
    try:
        logits = sm.model(x)
        (grad,) = torch.autograd.grad(logits[0, target], store["a"])
    finally:
        handle.remove()
    raw = (grad.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(1, keepdim=True).detach()
    return F.interpolate(raw, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def scaled(m: torch.Tensor) -> torch.Tensor:
    m = m.clamp_min(0)
    lo, hi = m.amin(dim=(1, 2), keepdim=True), m.amax(dim=(1, 2), keepdim=True)
    return (m - lo) / (hi - lo + 1e-7)


@pytest.mark.parametrize("mode", ["product", "mean"])
def test_global_view_fuses_the_full_image_map(sample, mode):
    sm, x = sample
    image = x[:1]
    with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam:
        plain = ucag.UCAG(cam, units=3).explain(image, [285])
        fused = ucag.UCAG(cam, units=3, global_view=mode, global_weight=0.3).explain(image, [285])
    global_map = reference_gradcam(sm, image, 285)
    torch.testing.assert_close(fused.global_map, global_map, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.raw, plain.raw)  # the UCAG part is unchanged
    u, g = scaled(plain.raw), scaled(global_map)
    expected = u * g if mode == "product" else 0.7 * u + 0.3 * g
    torch.testing.assert_close(fused.fused, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.saliency, ucag.postprocess.cam_postprocess(expected), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(fused.saliency, plain.saliency, atol=1e-3)
    assert fused.global_view == mode and plain.global_view is None and plain.global_map is None


def test_no_global_view_is_bit_identical_to_the_paper_method(sample):
    sm, x = sample
    with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam:
        default = ucag.UCAG(cam, units=3).explain(x[:2], [285, 967])
        explicit = ucag.UCAG(cam, units=3, global_view=None, global_weight=0.9).explain(x[:2], [285, 967])
    assert torch.equal(default.saliency, explicit.saliency) and torch.equal(default.raw, explicit.raw)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"global_view": "max"}, "global_view"), ({"global_view": "mean", "global_weight": 1.5}, "global_weight")],
)
def test_bad_global_view_settings(sample, kwargs, match):
    sm, _ = sample
    with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam, pytest.raises(ValueError, match=match):
        ucag.UCAG(cam, **kwargs)


@pytest.fixture(scope="module")
def tuned(sample):
    sm, x = sample
    space = {"units": (2, 3), "weighting": ("exp",), "global_view": (None, "product")}
    with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam:
        result = tune(sm.model, cam, x, step=STEP, space=space, progress=False)
    return sm, x, result


def test_tune_reports_every_setting(tuned):
    _, x, result = tuned
    assert [r.setting for r in result.rows] == [
        Setting(units=2),
        Setting(units=2, global_view="product"),
        Setting(units=3),
        Setting(units=3, global_view="product"),
    ]
    for r in result.rows:
        assert r.deletion.shape == r.insertion.shape == (4,) and np.isfinite(r.score)
        assert r.score == pytest.approx(r.mean_insertion - r.mean_deletion)
    assert result.row(result.best).score == max(r.score for r in result.rows)
    assert result.row(result.best).pareto  # the best insertion - deletion is never dominated
    table = result.markdown()
    assert table.count("\n| n=") == 4 and "Recommended: `ucag.UCAG(cam, units=" in table
    fig = result.plot()
    assert len(fig.axes) == 1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_recommended_setting_reproduces_its_scores(tuned):
    sm, x, result = tuned
    best = result.row(result.best)
    with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam:
        saliency = ucag.UCAG(cam, **result.best.ucag_kwargs((224, 224))).explain(x).saliency
    targets = sm.model(x).argmax(1)
    np.testing.assert_allclose(
        metrics.deletion(sm.model, x, saliency, targets, step=STEP).values, best.deletion, atol=1e-6
    )
    np.testing.assert_allclose(
        metrics.insertion(sm.model, x, saliency, targets, step=STEP).values, best.insertion, atol=1e-6
    )
    assert result.call.startswith("ucag.UCAG(cam, units=")


def test_pareto_front_by_hand():
    from ucag.eval.tuning import _pareto

    deletion = np.array([0.1, 0.2, 0.1, 0.3])
    insertion = np.array([0.5, 0.6, 0.4, 0.6])
    # 0: best deletion; 1: best insertion with lower deletion than 3; 2 dominated by 0; 3 by 1
    assert _pareto(deletion, insertion).tolist() == [True, True, False, False]


def test_bad_space(sample):
    sm, x = sample
    with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam:
        with pytest.raises(ValueError, match="space"):
            tune(sm.model, cam, x[:1], space={"units": (2,), "colour": ("red",)}, progress=False)
        with pytest.raises(ValueError, match="objective"):
            tune(sm.model, cam, x[:1], objective="accuracy", progress=False)

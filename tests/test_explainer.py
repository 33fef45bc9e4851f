"""ucag.UCAG against independent computations, on a small CNN and on the real sample model."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from captum import attr as captum_attr
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat

import spec_reference as ref
import ucag
import ucag.data
import ucag.postprocess
from conftest import assert_close_across_batches


class SmallCNN(nn.Module):
    """A small real CNN (random weights, fixed seed): conv stages, a post-ReLU feature map
    as the CAM layer, global pooling and a linear classifier over 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, 10)
        for bn in (m for m in self.features if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.1, 0.1)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def small():
    model = SmallCNN()
    photo = ucag.data.load_photo("chelsea")
    x = torch.nn.functional.interpolate(photo[None], size=(48, 64), mode="bilinear", antialias=True)
    x2 = torch.nn.functional.interpolate(
        ucag.data.load_photo("coffee")[None], size=(48, 64), mode="bilinear", antialias=True
    )
    return model, model.features[-1], torch.cat([x, x2]) * 2 - 1


SMALL = dict(units=3, scale=1.5)

# Every CAM class pytorch-grad-cam 1.5.7 exports, with the constructor arguments it needs.
CAM_CLASSES = {
    "GradCAM": lambda m, layer: pgc.GradCAM(m, [layer]),
    "HiResCAM": lambda m, layer: pgc.HiResCAM(m, [layer]),
    "GradCAMElementWise": lambda m, layer: pgc.GradCAMElementWise(m, [layer]),
    "GradCAMPlusPlus": lambda m, layer: pgc.GradCAMPlusPlus(m, [layer]),
    "XGradCAM": lambda m, layer: pgc.XGradCAM(m, [layer]),
    "LayerCAM": lambda m, layer: pgc.LayerCAM(m, [layer]),
    "EigenCAM": lambda m, layer: pgc.EigenCAM(m, [layer]),
    "EigenGradCAM": lambda m, layer: pgc.EigenGradCAM(m, [layer]),
    "KPCA_CAM": lambda m, layer: pgc.KPCA_CAM(m, [layer]),
    "ScoreCAM": lambda m, layer: pgc.ScoreCAM(m, [layer]),
    "AblationCAM": lambda m, layer: pgc.AblationCAM(m, [layer]),
    "RandomCAM": lambda m, layer: pgc.RandomCAM(m, [layer]),
    "FEM": lambda m, layer: pgc.FEM(m, [layer]),
    "ShapleyCAM": lambda m, layer: pgc.ShapleyCAM(m, [layer]),
    "FullGrad": lambda m, layer: pgc.FullGrad(m, [layer]),
    "FinerCAM": lambda m, layer: pgc.FinerCAM(m, [layer]),
    "RefineCAM": lambda m, layer: pgc.RefineCAM(m, [layer]),
    "SESS": lambda m, layer: pgc.SESS(m, [layer], num_scales=2),
}
NORMALISED = {"FullGrad", "FinerCAM", "RefineCAM", "SESS"}


@pytest.mark.parametrize("name", sorted(CAM_CLASSES))
def test_every_grad_cam_class(small, name):
    model, layer, x = small
    torch.manual_seed(1)  # RandomCAM
    cam = CAM_CLASSES[name](model, layer)
    targets = [ClassifierOutputTarget(3), ClassifierOutputTarget(7)]
    base_map = cam(x, targets) if name in ("FinerCAM", "RefineCAM") else cam(input_tensor=x, targets=targets)
    explainer = ucag.UCAG(cam, **SMALL)
    e = explainer.explain(x, targets)
    maps = explainer(input_tensor=x, targets=targets)
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (2, 48, 64)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert e.partials.shape[0] == 2 * 9 and e.partials_normalised == (name in NORMALISED)
    assert e.targets.tolist() == [3, 7]
    assert not np.allclose(maps, base_map, atol=1e-3)


def gradcam_reference(model, layer, x, targets, units, scale, chunk=16, fold="box"):
    """Independent UCAG(Grad-CAM): reference unfold, hooks + autograd for sum_k alpha_k A_k,
    softmax weights, reference fold."""
    H, W = x.shape[-2:]
    g = ref.geometry((H, W), units, scale=scale)
    n = units * units
    patches = ref.unfold(x, g)
    rows = torch.as_tensor(targets).repeat_interleave(n)
    maps, weights = [], []
    for s in range(0, len(patches), chunk):
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o, store=store: store.__setitem__("a", o))
        try:
            logits = model(patches[s : s + chunk])
        finally:
            handle.remove()
        t = rows[s : s + chunk]
        score = logits[torch.arange(len(t)), t].sum()
        (grad,) = torch.autograd.grad(score, store["a"])
        alpha = grad.mean(dim=(2, 3), keepdim=True)
        maps.append((alpha * store["a"]).sum(1).detach())
        weights.append(ref.confidence(logits.detach(), t, "exp"))
    return ref.fold(torch.cat(maps), torch.cat(weights), g, fold)


def assert_rel(actual, expected, rtol):
    err = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert err <= rtol, f"relative error {err:.3g}"


@pytest.mark.parametrize("fold", ["box", "linear", "cosine"])
def test_gradcam_on_a_small_cnn_equals_reference(small, fold):
    """The mechanics in milliseconds (the quick tier): unfold, Grad-CAM on every patch,
    confidence weights and each fold against the independent reference, on two images of
    another aspect ratio; the pretrained model's end-to-end checks follow."""
    model, layer, x = small
    targets = [3, 7]
    with ucag.UCAG(pgc.GradCAM(model, [layer]), fold=fold, **SMALL) as explainer:
        e = explainer.explain(x, targets)
    assert_rel(e.raw, gradcam_reference(model, layer, x, targets, SMALL["units"], SMALL["scale"], fold=fold), 1e-4)
    captum = ucag.UCAG(captum_attr.LayerGradCam(model, layer), fold=fold, **SMALL).explain(x, targets)
    assert_rel(captum.raw, e.raw, 1e-4)


@pytest.mark.batch_comparison
def test_batch_equals_separate_calls_and_chunking_is_invisible(small):
    model, layer, x = small
    cam = pgc.GradCAM(model, [layer])
    whole = ucag.UCAG(cam, batch_size=4, **SMALL).explain(x, [3, 7])
    for b, t in enumerate([3, 7]):
        single = ucag.UCAG(cam, batch_size=9, **SMALL).explain(x[b : b + 1], [t])
        assert_close_across_batches(single.raw[0], whole.raw[b])
    for bs in (1, 5, 18, 64):
        other = ucag.UCAG(cam, batch_size=bs, **SMALL).explain(x, [3, 7])
        assert_close_across_batches(other.raw, whole.raw)
    expected = gradcam_reference(model, layer, x, [3, 7], SMALL["units"], SMALL["scale"])
    assert_rel(whole.raw, expected, 1e-4)


def test_targets_none_is_the_prediction_and_ints_work(small):
    model, layer, x = small
    cam = pgc.GradCAM(model, [layer])
    predicted = model(x).argmax(1).tolist()
    e = ucag.UCAG(cam, **SMALL).explain(x)
    assert e.targets.tolist() == predicted
    torch.testing.assert_close(ucag.UCAG(cam, **SMALL).explain(x, predicted).raw, e.raw)
    torch.testing.assert_close(ucag.UCAG(cam, **SMALL).explain(x, torch.tensor(predicted)).raw, e.raw)


def test_state_is_restored_after_a_call_that_raised(small):
    model, layer, x = small
    flags = [p.requires_grad for p in model.parameters()]
    model.features[0].weight.requires_grad_(False)
    before_flags = [p.requires_grad for p in model.parameters()]
    hooks_before = {k: dict(v._forward_hooks) for k, v in model.named_modules()}
    calls = []

    def broken(patches, targets):
        calls.append(1)
        model.train()
        model.features[3].register_forward_hook(lambda *a: None)
        for p in model.parameters():
            p.requires_grad_(True)
        if len(calls) == 2:
            raise RuntimeError("base method failed")
        return torch.ones(len(patches), 4, 4)

    with pytest.raises(RuntimeError, match="base method failed"):
        ucag.UCAG(broken, model=model, batch_size=9, **SMALL).explain(x, [1, 2])
    assert not model.training and not any(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == before_flags
    assert {k: dict(v._forward_hooks) for k, v in model.named_modules()} == hooks_before
    for p, f in zip(model.parameters(), flags, strict=True):
        p.requires_grad_(f)


@pytest.mark.parametrize(
    "call,exc,argument",
    [
        (lambda ex, x: ex(input_tensor=x, targets=[1]), ValueError, "targets"),
        (lambda ex, x: ex(input_tensor=x, targets=[1, 2, 3]), ValueError, "targets"),
        (lambda ex, x: ex(input_tensor=x, targets=[1.5, 2]), TypeError, "targets"),
        (lambda ex, x: ex(input_tensor=x, targets="ab"), TypeError, "targets"),
        (lambda ex, x: ex(input_tensor=x[0], targets=[1]), ValueError, "input_tensor"),
        (lambda ex, x: ex(input_tensor=x.numpy(), targets=[1, 2]), TypeError, "input_tensor"),
        (lambda ex, x: ex(input_tensor=(x * 100).long(), targets=[1, 2]), TypeError, "input_tensor"),
        (lambda ex, x: ex(input_tensor=x[:0], targets=[]), ValueError, "input_tensor"),
        (lambda ex, x: ucag.UCAG(ex.base, patch_size=40, units=3)(x[..., :32, :32], [1, 2]), ValueError, "patch_size"),
    ],
)
def test_bad_calls_raise_clear_errors(small, call, exc, argument):
    model, layer, x = small
    with pytest.raises(exc, match=argument):
        call(ucag.UCAG(pgc.GradCAM(model, [layer]), **SMALL), x)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(units=0), "units"),
        (dict(scale=-1.0), "scale"),
        (dict(batch_size=0), "batch_size"),
        (dict(weighting="softmax"), "weighting"),
        (dict(postprocess="relu"), "postprocess"),
        (dict(fold="hann"), "fold"),
    ],
)
def test_bad_settings_fail_at_construction(small, kwargs, argument):
    model, layer, _ = small
    with pytest.raises(ValueError, match=argument):
        ucag.UCAG(pgc.GradCAM(model, [layer]), **kwargs)


def test_plain_callable_needs_a_model(small):
    with pytest.raises(ValueError, match="model"):
        ucag.UCAG(lambda p, t: p.mean(1))


# ---- the real sample model on a real photo ----------------------------------------------


@pytest.fixture(scope="module")
def sample(sample_model, photos):
    return sample_model, photos["chelsea"]


def test_sample_model_classifies_the_photo(sample):
    sm, x = sample
    with torch.no_grad():
        p = sm.model(x).softmax(1)[0]
    assert sm.class_names[int(p.argmax())] in ("Egyptian cat", "tabby", "tiger cat")
    assert float(p.max()) > 0.5


def test_gradcam_on_sample_model_equals_reference(sample):
    sm, x = sample
    cam = pgc.GradCAM(model=sm.model, target_layers=[sm.target_layer])
    with ucag.UCAG(cam) as explainer:
        e = explainer.explain(x, [ClassifierOutputTarget(285)])
    assert e.partials.shape == (36, 10, 10) and not e.partials_normalised
    expected = gradcam_reference(sm.model, sm.target_layer, x, [285], 6, 2.6)
    assert_rel(e.raw, expected, 1e-4)
    assert e.saliency.shape == (1, 224, 224) and float(e.saliency.min()) >= 0 and float(e.saliency.max()) <= 1
    # post-processing is docs/algorithm.md §5 on the raw map
    torch.testing.assert_close(e.saliency, ucag.postprocess.cam_postprocess(e.raw))


@pytest.mark.parametrize("fold", ["linear", "cosine"])
def test_tapered_folds_on_sample_model_equal_reference(sample, fold):
    sm, x = sample
    # a 3 x 3 grid: patches overlap by 74 of 124 px, all the taper needs (the 6 x 6 default
    # is checked above with the box fold)
    with ucag.UCAG(pgc.GradCAM(model=sm.model, target_layers=[sm.target_layer]), units=3, fold=fold) as explainer:
        e = explainer.explain(x, [285])
    assert explainer.fold == fold and f"fold={fold!r}" in repr(explainer)
    assert_rel(e.raw, gradcam_reference(sm.model, sm.target_layer, x, [285], 3, 2.6, fold=fold), 1e-4)


def test_captum_layer_gradcam_on_sample_model_equals_reference(sample):
    sm, x = sample
    e = ucag.UCAG(captum_attr.LayerGradCam(sm.model, sm.target_layer), units=3).explain(x, [285])
    expected = gradcam_reference(sm.model, sm.target_layer, x, [285], 3, 2.6)
    assert_rel(e.raw, expected, 1e-4)


def test_zennit_gradient_on_sample_model_equals_reference(sample):
    sm, x = sample
    e = ucag.UCAG(Gradient(sm.model), units=3).explain(x, [285])
    assert e.postprocess == "none" and e.partials.shape == (9, *e.grid.scaled_size)
    # independent: input gradient of the target logit, summed over channels. The patches are
    # the explainer's own: input gradients of a ReLU network jump when an input moves by a
    # rounding error (the portable unfold's float64 taps differ from F.interpolate's float32
    # ones by ~1e-6, which moves this map by 3%); test_kernels checks the unfold itself.
    g = ref.geometry((224, 224), 3)
    patches = ucag.unfold(x, e.grid).requires_grad_(True)
    logits = sm.model(patches)
    (grad,) = torch.autograd.grad(logits[:, 285].sum(), patches)
    expected = ref.fold(grad.sum(1), ref.confidence(logits.detach(), [285] * 9), g)
    assert_rel(e.raw, expected, 1e-4)
    assert (e.raw < 0).any() and (e.raw > 0).any()  # signed, not post-processed


def test_zennit_lrp_composite_runs_signed(sample):
    sm, x = sample
    e = ucag.UCAG(Gradient(sm.model, EpsilonPlusFlat()), units=2, patch_size=160).explain(x, [285])
    assert torch.isfinite(e.raw).all() and (e.raw > 0).any()
    assert e.base.startswith("Gradient[EpsilonPlusFlat]")


class TinyViT(nn.Module):
    """A small vision transformer: 8 px patch tokens plus a class token, two encoder layers."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, dim, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.blocks = nn.Sequential(
            *[nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True) for _ in range(2)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def test_vit_target_layer_with_reshape_transform(small):
    _, _, x = small
    model = TinyViT()

    def reshape_transform(tokens: torch.Tensor) -> torch.Tensor:
        side = int(round((tokens.shape[1] - 1) ** 0.5))
        return tokens[:, 1:].reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)

    square = x[..., :48, :48]
    cam = pgc.GradCAM(model, [model.blocks[-1].norm1], reshape_transform=reshape_transform)
    # units=3 on 48 px: patches of 27 px, x2.6 -> 70 px? use an explicit scaled size that
    # the 8 px tokenizer divides: scale 64/27
    e = ucag.UCAG(cam, units=3, scale=64 / 27).explain(square, [2, 5])
    assert e.grid.scaled_size == (64, 64)
    assert e.partials.shape == (18, 8, 8) and not e.partials_normalised
    assert torch.isfinite(e.raw).all() and e.saliency.shape == (2, 48, 48)


def test_user_target_objects_keep_their_meaning(small):
    """A softmax target explains the softmax score; the confidence weights still use the
    target's class."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, layer, x = small
    cam = pgc.GradCAM(model, [layer])
    logit = ucag.UCAG(cam, **SMALL).explain(x, [ClassifierOutputTarget(3), ClassifierOutputTarget(7)])
    soft = ucag.UCAG(cam, **SMALL).explain(x, [ClassifierOutputSoftmaxTarget(3), ClassifierOutputSoftmaxTarget(7)])
    assert soft.targets.tolist() == [3, 7]
    torch.testing.assert_close(soft.weights, logit.weights)
    assert not torch.allclose(soft.raw, logit.raw)

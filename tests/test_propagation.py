"""ucag.bases.propagation (LRP, c*LRP, SGLRP, FullGrad) against what their rules promise on small
toy networks (conservation, signs, the softmax gradient written out by hand, grad-cam's
own FullGrad), and wrapped by ucag.UCAG on the sample model and a real photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon, Norm, Pass
from zennit.types import Activation, AvgPool
from zennit.types import Linear as AnyLinear

import ucag
from conftest import assert_close_across_batches
from ucag.bases.adapters import PatchAttribution, make_adapter
from ucag.bases.propagation import (
    LRP,
    ContrastiveLRP,
    FullGrad,
    SoftmaxGradientLRP,
    _fullgrad_per_layer,
    contrastive_output_relevance,
    default_canonizers,
    lrp_output_relevance,
    softmax_gradient_relevance,
    traced_batchnorm_pairs,
)
from ucag.eval import registry
from ucag.eval.registry import METHODS, methods_of_kind

#: The registered propagation methods (LRP, c*LRP, SGLRP, FullGrad).
PROPAGATION = methods_of_kind("propagation")


def propagation_method(name, model):
    return METHODS[name].factory(model, None)


# ---- toy networks -------------------------------------------------------------------------


class ZeroBiasNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> average pool -> linear, all without biases."""

    def __init__(self, classes: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(6, classes, bias=False)

    def forward(self, x):
        return self.fc(self.features(x))


class HalvesNet(nn.Module):
    """Two classes: class 0 sums the left half of a one-channel image, class 1 the right."""

    def __init__(self, h: int = 4, w: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(h * w, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            left = torch.zeros(h, w)
            left[:, : w // 2] = 1
            self.fc.weight.copy_(torch.stack([left.flatten(), 1 - left.flatten()]))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


class PaddedConv(nn.Conv2d):
    """A convolution holding its padding as a child module (as the sample EfficientNet's
    Conv2dStaticSamePadding does), so it is not a leaf module."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad = nn.ZeroPad2d(1)

    def forward(self, x):
        return super().forward(self.pad(x))


class BatchNormNet(nn.Module):
    """conv (with a child module) -> batch norm (eps 1e-3, registered BEFORE its conv) ->
    ReLU -> conv with bias -> ReLU -> mean -> linear."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.bn = nn.BatchNorm2d(4, eps=1e-3)
        self.conv = PaddedConv(3, 4, 3, bias=False)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)
        self.eval()

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(F.relu(self.conv2(x)).mean(dim=(2, 3)))


def epsilon_everywhere() -> LayerMapComposite:
    """The epsilon rule on every linear / convolutional layer."""
    return LayerMapComposite([(Activation, Pass()), (AvgPool, Norm()), (AnyLinear, Epsilon(epsilon=1e-9))])


def zennit_relevance(model, x, output_relevance, composite):
    """Input relevance summed over channels, straight from zennit with a given output relevance."""
    _, relevance = Gradient(model, composite)(x.clone(), lambda out: output_relevance(out.detach()))
    return relevance.sum(1)


# ---- output relevances --------------------------------------------------------------------


def test_softmax_gradient_relevance_matches_the_hand_computed_gradient():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.3, 0.2, 0.1, 3.0]])
    targets = torch.tensor([0, 2])
    got = softmax_gradient_relevance(logits, targets)
    for b in range(2):
        e = [float(np.exp(v)) for v in logits[b].tolist()]
        y = [v / sum(e) for v in e]
        t = int(targets[b])
        for k in range(4):
            expected = y[t] * (1 - y[t]) if k == t else -y[t] * y[k]
            assert got[b, k].item() == pytest.approx(expected, rel=1e-5, abs=1e-8)
        # ... which is the Jacobian row of softmax_t with respect to the logits
        jacobian = torch.autograd.functional.jacobian(lambda z, t=t: torch.softmax(z, -1)[t], logits[b])
        torch.testing.assert_close(got[b], jacobian)
    assert got.sum(dim=1).abs().max() < 1e-6  # a softmax gradient sums to zero


def test_contrastive_output_relevance_shares_the_target_score_among_the_others():
    logits = torch.tensor([[4.0, 1.0, -2.0, 0.5]])
    got = contrastive_output_relevance(logits, torch.tensor([0]))
    torch.testing.assert_close(got, torch.tensor([[4.0, -4.0 / 3, -4.0 / 3, -4.0 / 3]]))
    with pytest.raises(ValueError, match="two classes"):
        contrastive_output_relevance(torch.ones(1, 1), torch.tensor([0]))


def test_lrp_output_relevance_is_the_target_logit():
    logits = torch.tensor([[4.0, -1.0], [0.5, -3.0]])
    torch.testing.assert_close(
        lrp_output_relevance(logits, torch.tensor([1, 1])), torch.tensor([[0.0, -1.0], [0.0, -3.0]])
    )


# ---- conservation and signs on toys -------------------------------------------------------


@pytest.mark.parametrize("composite", [None, "epsilon", "epsilon_plus"])
def test_lrp_conserves_the_target_logit_on_a_zero_bias_relu_net(composite):
    model = ZeroBiasNet()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = [0, 1, 2]
    lrp = LRP(model, composite=epsilon_everywhere() if composite == "epsilon" else composite)
    result = lrp.attribute(x, targets)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(result.logits, logits)
    target_logits = logits[torch.arange(3), torch.tensor(targets)]
    torch.testing.assert_close(result.maps.sum(dim=(1, 2)), target_logits, rtol=1e-4, atol=1e-5)


def test_contrastive_lrp_is_positive_on_the_target_and_negative_on_the_other_class():
    model = HalvesNet()
    x = torch.rand(2, 1, 4, 8, generator=torch.Generator().manual_seed(2)) + 0.1
    maps = ContrastiveLRP(model)(input_tensor=x, targets=[0, 1])
    assert (maps[0, :, :4] > 0).all() and (maps[0, :, 4:] < 0).all()
    assert (maps[1, :, 4:] > 0).all() and (maps[1, :, :4] < 0).all()
    # two classes: the dual receives the whole target score, so the map sums to zero
    assert np.abs(maps.sum(axis=(1, 2))).max() < 1e-4
    # plain LRP of the same target has no negative part here
    plain = LRP(model)(input_tensor=x, targets=[0, 1])
    assert plain.min() >= 0 and np.abs(plain[0, :, 4:]).max() < 1e-6


def test_contrastive_lrp_in_one_pass_equals_target_minus_dual_relevance():
    model = ZeroBiasNet(classes=4)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([1, 3])
    got = ContrastiveLRP(model, composite=epsilon_everywhere()).attribute(x, targets).maps

    def target_part(out):
        return out * F.one_hot(targets, 4)

    def dual_part(out):
        y_t = out.gather(1, targets[:, None])
        return y_t / 3 * (1 - F.one_hot(targets, 4))

    expected = zennit_relevance(model, x, target_part, epsilon_everywhere()) - zennit_relevance(
        model, x, dual_part, epsilon_everywhere()
    )
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_sglrp_propagates_the_softmax_gradient_and_sums_to_zero():
    model = ZeroBiasNet()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([2, 0])
    got = SoftmaxGradientLRP(model, composite=epsilon_everywhere()).attribute(x, targets).maps

    def by_hand(out):  # y_t (1 - y_t) on the target, -y_t y_k elsewhere
        y = torch.softmax(out, -1)
        y_t = y.gather(1, targets[:, None])
        return torch.where(F.one_hot(targets, 3).bool(), y_t * (1 - y_t), -y_t * y)

    torch.testing.assert_close(got, zennit_relevance(model, x, by_hand, epsilon_everywhere()), rtol=1e-5, atol=1e-8)
    assert got.sum(dim=(1, 2)).abs().max() < 1e-5  # conserved: the output relevance sums to 0
    assert (got < 0).any() and (got > 0).any()


# ---- call convention ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LRP, ContrastiveLRP, SoftmaxGradientLRP, FullGrad])
def test_grad_cam_call_convention(cls):
    model = BatchNormNet()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    method = cls(model)
    maps = method(input_tensor=x, targets=[ClassifierOutputTarget(1), 2])
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (2, 8, 8)
    assert np.isfinite(maps).all()
    np.testing.assert_allclose(maps, method(x, [1, 2]), rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    np.testing.assert_allclose(method(x), method(x, predicted.tolist()), rtol=1e-5, atol=1e-7)
    # as a plain callable on patches with a target tensor, as UCAG's callable path calls it
    np.testing.assert_allclose(method(x, torch.tensor([1, 2])), maps, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="targets"):
        method(x, [1])
    with pytest.raises(TypeError, match="input_tensor"):
        method(x.numpy())
    with pytest.raises(ValueError, match="aug_smooth"):
        method(x, aug_smooth=True)


def test_model_state_is_left_as_it_was():
    model = BatchNormNet().train()
    x = torch.randn(1, 3, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in PROPAGATION:
        propagation_method(name, model)(x, [0])
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


def test_adapter_reports_own_logits_and_propagation_kind():
    model = ZeroBiasNet()
    patches = torch.randn(3, 3, 8, 8)
    targets = torch.tensor([0, 2, 1])
    for name in PROPAGATION:
        method = propagation_method(name, model)
        adapter = method.ucag_adapter()
        assert adapter.map_kind == "signed" and adapter.model is model
        out = adapter(patches, targets)
        assert isinstance(out, PatchAttribution) and out.maps.shape == (3, 8, 8) and not out.normalised
        with torch.no_grad():
            torch.testing.assert_close(out.logits, model(patches))
    with pytest.raises(ValueError, match="model"):
        LRP(model).ucag_adapter(ZeroBiasNet())
    with pytest.raises(ValueError, match="method"):
        registry.method("rap")


def test_ucag_picks_the_propagation_adapter_and_keeps_maps_signed():
    model = ZeroBiasNet()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    assert make_adapter(LRP(model)).map_kind == "signed"
    explainer = ucag.UCAG(SoftmaxGradientLRP(model), units=2, patch_size=10, scale=1.0)
    assert explainer.postprocess == "none"
    explanation = explainer.explain(x, [1])
    assert explanation.base.startswith("SoftmaxGradientLRP")
    torch.testing.assert_close(explanation.saliency, explanation.raw)
    assert (explanation.raw < 0).any() and (explanation.raw > 0).any()


# ---- canonizers ---------------------------------------------------------------------------


def test_batch_norms_are_found_by_tracing_and_merged_exactly():
    model = BatchNormNet()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    assert traced_batchnorm_pairs(model, x[:1]) == [(("conv",), "bn")]
    (canonizer,) = default_canonizers(model, x[:1])
    from zennit.composites import EpsilonPlusFlat

    with torch.no_grad():
        reference = model(x)
        with EpsilonPlusFlat(canonizers=[canonizer]).context(model):
            merged = model(x)
            assert model.conv.bias is not None  # the batch norm now lives in the conv
        after = model(x)
    torch.testing.assert_close(merged, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after, reference, rtol=0, atol=0)
    assert model.conv.bias is None
    lrp = LRP(model)
    lrp(x, [0, 1])
    assert [type(c).__name__ for c in lrp.composite.canonizers] == ["ExactNamedMergeBatchNorm"]


def test_torchvision_models_get_zennit_canonizers():
    import torchvision
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    assert isinstance(default_canonizers(torchvision.models.resnet18())[0], ResNetCanonizer)
    assert isinstance(default_canonizers(torchvision.models.vgg11())[0], VGGCanonizer)


# ---- FullGrad -----------------------------------------------------------------------------


@pytest.mark.batch_comparison  # exact=True runs in chunks of 2, the fast sum in one batch
def test_fullgrad_raw_map_is_grad_cams_map_before_its_min_max_scaling():
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.image import scale_cam_image

    model = BatchNormNet()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(8))
    targets = [0, 2, 1]
    fast = FullGrad(model).attribute(x, targets)
    exact = FullGrad(model, exact=True, chunk_size=2).attribute(x, targets)
    assert_close_across_batches(fast.maps, exact.maps)
    assert fast.maps.min() >= 0 and fast.maps.max() > 1  # raw: a sum of normalised components
    with pytorch_grad_cam.FullGrad(model, []) as cam:
        normalised = cam(x, [ClassifierOutputTarget(t) for t in targets])
    assert_close_across_batches(scale_cam_image(exact.maps.numpy()), normalised)  # grad-cam's in one batch of 3
    with torch.no_grad():
        torch.testing.assert_close(fast.logits, model(x))


def test_fullgrad_fast_sum_equals_grad_cams_per_layer_loop():
    import pytorch_grad_cam

    model = BatchNormNet()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(9))
    captured = {}
    with pytorch_grad_cam.FullGrad(model, []) as cam:
        original = cam.compute_cam_per_layer

        def both(input_tensor, targets, eigen_smooth):
            captured["fast"] = _fullgrad_per_layer(cam, input_tensor)
            captured["grad_cam"] = original(input_tensor, targets, eigen_smooth)
            return captured["grad_cam"]

        cam.compute_cam_per_layer = both
        cam(x, None)
    assert captured["fast"].shape == captured["grad_cam"].shape == (2, 1, 10, 10)
    np.testing.assert_allclose(captured["fast"], captured["grad_cam"], rtol=1e-5, atol=1e-5)


# ---- the sample model on a real photo, wrapped by UCAG -------------------------------------


@pytest.fixture(scope="module")
def photo(sample_model, photos):
    return sample_model, photos["chelsea"]


@pytest.mark.parametrize("name", PROPAGATION)
def test_ucag_around_each_method_on_the_sample_model(photo, name):
    sm, x = photo
    method = propagation_method(name, sm.model)
    base = method(input_tensor=x, targets=[285])  # Egyptian cat
    assert base.shape == (1, 224, 224) and np.isfinite(base).all()
    # 2 x 2 patches upsampled x1.5 (186 px) to keep the test quick on a CPU
    explainer = ucag.UCAG(method, units=2, scale=1.5, batch_size=4)
    assert explainer.postprocess == "none"
    explanation = explainer.explain(x, [285])
    maps = explanation.saliency
    assert maps.shape == (1, 224, 224) and torch.isfinite(maps).all()
    torch.testing.assert_close(maps, explanation.raw)  # signed and unnormalised
    assert not explanation.partials_normalised
    assert explanation.partials.shape == (4, 186, 186)  # input-level partial maps
    difference = np.abs(maps.numpy() - base).max()
    assert difference > 1e-3 * np.abs(base).max()
    if name in ("clrp", "sglrp"):
        assert (maps < 0).any() and (maps > 0).any()
    if name == "fullgrad":
        assert maps.min() >= 0 and maps.max() > 1  # raw FullGrad, not min-max scaled
    with torch.no_grad():  # the confidence weights: the target's probability on each patch
        expected = torch.softmax(sm.model(ucag.unfold(x, explanation.grid)), 1)[:, 285]
    torch.testing.assert_close(explanation.probabilities, expected, rtol=1e-4, atol=1e-6)

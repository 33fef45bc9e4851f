"""ucag.eval.registry: every method defined once, and the adapter contract every base
meets (ucag.bases.Adapter)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ucag
from ucag.bases import Adapter, make_adapter
from ucag.eval import registry
from ucag.eval.registry import METHODS, display_name, gradcam_class, method, methods_of_kind, register_method


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    model = TinyNet().eval()
    return model, model.features[1], torch.randn(2, 3, 32, 32)


def test_every_method_once_with_kind_and_display_name():
    assert list(METHODS)[:2] == ["gradcam", "gradcam++"]
    assert set(methods_of_kind("propagation")) == {"fullgrad", "lrp", "clrp", "sglrp"}
    assert methods_of_kind("baseline") == ("cameras",)
    assert all(spec.name == name and spec.display_name for name, spec in METHODS.items())
    assert display_name("gradcam++", "ucag") == "UCAG(Grad-CAM++)" and display_name("clrp") == "c*LRP"
    # the CLI's choices come from the registry
    from ucag.cli import base_methods

    assert set(base_methods()) == set(METHODS) - {"cameras", "random", "sobel"}
    assert methods_of_kind("control") == ("random", "sobel")


def test_fullgrad_means_ucags_raw_fullgrad_and_sess_wraps_grad_cams(tiny):
    model, layer, x = tiny
    with METHODS["fullgrad"].build(model, layer) as base:
        assert isinstance(base, ucag.bases.FullGrad)
    import pytorch_grad_cam

    assert gradcam_class("fullgrad") is pytorch_grad_cam.FullGrad
    assert gradcam_class("gradcam") is pytorch_grad_cam.GradCAM
    with pytest.raises(ValueError, match="method: 'lrp' has no pytorch-grad-cam class"):
        gradcam_class("lrp")


def test_unknown_names_and_duplicate_registrations_are_refused():
    with pytest.raises(ValueError, match="^method: expected one of gradcam, "):
        method("gradcma")
    with pytest.raises(ValueError, match="already"):
        register_method("gradcam", "Grad-CAM", "gradcam")(lambda model, layer: None)


def test_a_registered_method_joins_comparisons(tiny):
    model, layer, x = tiny

    @register_method("test-saliency", "Test saliency", "propagation")
    def _factory(model: nn.Module, target_layer: nn.Module) -> ucag.bases.LRP:
        return ucag.bases.LRP(model)

    try:
        assert ("test-saliency", "ucag") in registry.comparison_pairs(["test-saliency"])
        maps = registry.explain_with("test-saliency", "ucag", model, layer, x, [1, 2], ucag_options={"units": 2})
        assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all() and float(maps.max()) <= 1.0
        assert display_name("test-saliency", "ucag") == "UCAG(Test saliency)"
    finally:
        del METHODS["test-saliency"]


def test_build_releases_grad_cam_hooks(tiny):
    model, layer, x = tiny
    with METHODS["gradcam"].build(model, layer) as cam:
        assert layer._forward_hooks
        cam(input_tensor=x, targets=None)
    assert not layer._forward_hooks


@pytest.mark.parametrize("name", [n for n in METHODS if n != "cameras"])
def test_every_base_meets_the_adapter_contract(tiny, name):
    model, layer, x = tiny
    options = {"mean": (0.5,) * 3, "std": (0.25,) * 3} if name == "sobel" else {}  # Sobel recovers the image first
    with METHODS[name].build(model, layer, **options) as base:
        adapter = make_adapter(base, model)
        assert isinstance(adapter, Adapter)
        assert adapter.model is model and adapter.map_kind in ("cam", "signed") and isinstance(adapter.name, str)
        assert adapter.truncate == adapter.truncatable  # truncated where it may be, by default
        out = adapter(x, torch.tensor([1, 3]))
        assert out.maps.dim() == 3 and out.maps.shape[0] == 2 and out.logits.shape == (2, 4)
        adapter.release()
    assert not layer._forward_hooks and not layer._backward_hooks


def test_captum_zennit_and_callables_meet_the_contract(tiny):
    model, layer, x = tiny
    from captum.attr import LayerGradCam, Saliency
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    bases = [
        LayerGradCam(model, layer),
        Saliency(model),
        Gradient(model, EpsilonPlusFlat()),
        lambda patches, targets: patches.mean(1),
    ]
    kinds = ["cam", "cam", "signed", "cam"]
    for base, kind in zip(bases, kinds, strict=True):
        adapter = make_adapter(base, model)
        assert isinstance(adapter, Adapter) and adapter.map_kind == kind and not adapter.truncatable
        assert adapter(x, torch.tensor([0, 1])).logits.shape == (2, 4)
        with pytest.raises(ValueError, match="^aug_smooth: "):
            adapter(x, torch.tensor([0, 1]), aug_smooth=True)
        with pytest.raises(ValueError, match="^eigen_smooth: "):
            ucag.UCAG(base, model=model, units=2).explain(x, [0, 1], eigen_smooth=True)


def test_attribute_options_only_for_captum(tiny):
    model, layer, x = tiny
    import pytorch_grad_cam
    from captum.attr import IntegratedGradients

    explainer = ucag.UCAG(IntegratedGradients(model), units=2, attribute_kwargs={"n_steps": 3})
    assert explainer.adapter.attribute_kwargs == {"n_steps": 3}
    with pytest.raises(
        TypeError, match=r"^attribute_kwargs: only Captum bases take attribute options, got \['n_steps'\] for GradCAM"
    ):
        ucag.UCAG(pytorch_grad_cam.GradCAM(model, [layer]), attribute_kwargs={"n_steps": 3})
    with pytest.raises(TypeError, match="takes no attribute options"):
        ucag.UCAG(ucag.bases.LRP(model), attribute_kwargs={"epsilon": 1.0})
    # checked on construction against the method's attribute(), before any patch runs
    with pytest.raises(
        TypeError, match=r"^attribute_kwargs: IntegratedGradients.attribute takes no 'n_step'; it takes "
    ):
        ucag.UCAG(IntegratedGradients(model), attribute_kwargs={"n_step": 3})
    with pytest.raises(TypeError, match=r"^attribute_kwargs: 'target' is set by UCAG"):
        ucag.UCAG(IntegratedGradients(model), attribute_kwargs={"target": 3})
    with pytest.raises(TypeError, match=r"^attribute_kwargs: expected a dict"):
        ucag.UCAG(IntegratedGradients(model), attribute_kwargs=[("n_steps", 3)])
    # options are no longer loose keyword arguments
    with pytest.raises(TypeError, match="n_steps"):
        ucag.UCAG(IntegratedGradients(model), n_steps=3)


def test_the_explainer_releases_the_base_through_its_adapter(tiny):
    model, layer, x = tiny
    import pytorch_grad_cam

    cam = pytorch_grad_cam.GradCAM(model, [layer])
    with ucag.UCAG(cam, units=2) as explainer:
        explainer.explain(x, [0, 1])
        assert layer._forward_hooks
    assert not layer._forward_hooks

"""ucag.eval.registry: every method and every variant defined once, each entry running what
it declares (one test per registry, parametrised over its entries, so registering is enough
to be tested), and the adapter contract every base meets (ucag.bases.Adapter)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from torch import nn

import ucag
from ucag.bases import Adapter, make_adapter
from ucag.eval import registry
from ucag.eval.registry import (
    BASELINES,
    CONTROLS,
    GRADCAM_VARIANTS,
    METHODS,
    ONCE,
    TARGET_VARIANTS,
    VARIANT_SPECS,
    VARIANTS,
    MethodSpec,
    Request,
    comparison_pairs,
    display_name,
    gradcam_class,
    method,
    methods_of_kind,
    register_method,
    register_variant,
)
from ucag.targets import MultiLabelTarget


class ToyCNN(nn.Module):
    """Two convolutions down to an 8x8 feature map and a linear head: every registered
    method runs on it, in every variant, in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model = ToyCNN().eval()
    return model, model.features[3], torch.randn(2, 3, 32, 32)


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


def test_fullgrad_means_ucags_raw_fullgrad_and_sess_wraps_grad_cams(toy):
    model, layer, x = toy
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


def test_a_registered_method_joins_comparisons(toy):
    model, layer, x = toy

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


def test_build_releases_grad_cam_hooks(toy):
    model, layer, x = toy
    with METHODS["gradcam"].build(model, layer) as cam:
        assert layer._forward_hooks
        cam(input_tensor=x, targets=None)
    assert not layer._forward_hooks


@pytest.mark.parametrize("name", [n for n in METHODS if n != "cameras"])
def test_every_base_meets_the_adapter_contract(toy, name):
    model, layer, x = toy
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


def test_captum_zennit_and_callables_meet_the_contract(toy):
    model, layer, x = toy
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


def test_attribute_options_only_for_captum(toy):
    model, layer, x = toy
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


def test_the_explainer_releases_the_base_through_its_adapter(toy):
    model, layer, x = toy
    import pytorch_grad_cam

    cam = pytorch_grad_cam.GradCAM(model, [layer])
    with ucag.UCAG(cam, units=2) as explainer:
        explainer.explain(x, [0, 1])
        assert layer._forward_hooks
    assert not layer._forward_hooks


#: Small settings every entry runs with: UCAG's 2 x 2 grid, CAMERAS at two sizes, SESS at
#: two scales, and the inputs' normalisation the Sobel control needs to recover the image.
SMALL = {
    "ucag_options": {"units": 2, "batch_size": 4},
    "baseline_options": {"cameras": {"resolutions": [32, 48]}, "sess": {"num_scales": 2}},
    "mean": (0.5,) * 3,
    "std": (0.25,) * 3,
}
CLASSES = [1, 2]
LABELS = [MultiLabelTarget(1), MultiLabelTarget(2)]  # target objects beyond a softmax class


def _explain(toy, name: str, variant: str, targets=CLASSES, layer: nn.Module | None = None) -> torch.Tensor:
    model, target_layer, x = toy
    return registry.explain_with(name, variant, model, layer or target_layer, x, targets, **SMALL)


def _assert_maps(maps: torch.Tensor) -> None:
    """(B, H, W) float maps in [0, 1], finite, and none of them constant."""
    assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    spread = maps.flatten(1).amax(1) - maps.flatten(1).amin(1)
    assert (spread > 0).all(), "a constant map"


def test_the_name_tables_are_read_from_the_registries():
    # the command line's choices keep their order
    assert list(VARIANTS) == list(VARIANT_SPECS) == ["base", "ucag", "upscale", "sess", "sess-matched", "refinecam"]
    assert BASELINES == ("upscale", "sess", "sess-matched", "refinecam", "cameras", "random", "sobel")
    assert ONCE == ("cameras", "random", "sobel") and tuple(CONTROLS) == methods_of_kind("control")
    assert GRADCAM_VARIANTS == ("sess", "sess-matched", "refinecam")
    assert TARGET_VARIANTS == ("base", "ucag", "upscale", "sess", "sess-matched")
    assert VARIANTS["sess-matched"] == "SESS-matched" and dict(VARIANTS)["base"] == ""
    assert BASELINES[:2] == ("upscale", "sess") and BASELINES[-1] == "sobel" and len(BASELINES) == 7
    with pytest.raises(ValueError, match="^variant: expected one of base, ucag, upscale, "):
        registry.variant_spec("usag")


@pytest.mark.parametrize("name", list(VARIANT_SPECS))
def test_every_variant_runs_what_its_entry_declares(toy, name):
    spec = VARIANT_SPECS[name]
    # Grad-CAM runs in every variant: it has a pytorch-grad-cam class and follows targets
    _assert_maps(_explain(toy, "gradcam", name))
    assert display_name("gradcam", name) == (f"{spec.prefix}(Grad-CAM)" if spec.prefix else "Grad-CAM")
    assert (name in BASELINES) == spec.baseline
    if spec.needs_gradcam_class:
        with pytest.raises(ValueError, match=f"^variants: {re.escape(spec.prefix)} takes a pytorch-grad-cam class"):
            comparison_pairs(["lrp"], [name])
    else:  # around a method without a grad-cam class too
        assert comparison_pairs(["lrp"], [name]) == [("lrp", name)]
        _assert_maps(_explain(toy, "lrp", name))
    if spec.follows_targets:
        _assert_maps(_explain(toy, "gradcam", name, LABELS))
    else:
        with pytest.raises(ValueError, match=f"^variants: {re.escape(name)} take class indices only; multilabel"):
            _explain(toy, "gradcam", name, LABELS)
    if spec.wraps:  # a control runs on its own only
        with pytest.raises(ValueError, match=f"^variant: the control {CONTROLS[0]!r} runs on its own"):
            _explain(toy, CONTROLS[0], name)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs_what_its_entry_declares(toy, name):
    spec = METHODS[name]
    model, _, _ = toy
    maps = _explain(toy, name, "base")
    _assert_maps(maps)
    if spec.kind == "control":  # a floor: never around UCAG
        with pytest.raises(ValueError, match=f"^variant: the control {name!r} runs on its own"):
            _explain(toy, name, "ucag")
    else:
        _assert_maps(_explain(toy, name, "ucag"))
    if spec.runs_once:  # a baseline of its own, once per comparison
        assert comparison_pairs([], ["base", "ucag"], [name]) == [(name, "base")]
    else:
        assert name not in BASELINES and comparison_pairs([name], ["base"]) == [(name, "base")]
    if spec.uses_layer:  # another layer, other maps
        assert not torch.equal(_explain(toy, name, "base", layer=model.features[1]), maps)
    else:  # no layer read: the same maps with a module the model never runs
        assert torch.equal(_explain(toy, name, "base", layer=nn.Identity()), maps)
    if spec.class_indices_only:
        with pytest.raises(ValueError, match=f"^methods: {re.escape(name)} take class indices only; multilabel"):
            _explain(toy, name, "base", LABELS)
    else:
        _assert_maps(_explain(toy, name, "base", LABELS))


def test_a_registered_variant_joins_comparisons(toy):
    model, layer, x = toy

    @register_variant("test-mirror", "Mirrored", baseline=True)
    def _mirrored(spec: MethodSpec, request: Request) -> torch.Tensor:
        """The method's own maps of the mirrored images, mirrored back."""
        mirrored = dataclasses.replace(request, inputs=request.inputs.flip(-1))
        return VARIANT_SPECS["base"].run(spec, mirrored).flip(-1)

    try:
        assert VARIANTS["test-mirror"] == "Mirrored" and display_name("gradcam", "test-mirror") == "Mirrored(Grad-CAM)"
        # a baseline around every method: after the other variants, before what runs once
        assert BASELINES[: -len(ONCE)][-1] == "test-mirror"
        assert comparison_pairs(["gradcam"], ["base"], ["test-mirror"]) == [
            ("gradcam", "base"),
            ("gradcam", "test-mirror"),
        ]
        maps = registry.explain_with("gradcam", "test-mirror", model, layer, x, CLASSES)
        assert torch.equal(maps, registry.explain_with("gradcam", "base", model, layer, x.flip(-1), CLASSES).flip(-1))
        with pytest.raises(ValueError, match="^variants: test-mirror take class indices only"):
            registry.explain_with("gradcam", "test-mirror", model, layer, x, LABELS)
        with pytest.raises(ValueError, match="^name: a variant 'test-mirror' is registered already"):
            register_variant("test-mirror", "Again")(_mirrored)
    finally:
        del VARIANT_SPECS["test-mirror"]
    assert "test-mirror" not in VARIANTS and "test-mirror" not in BASELINES

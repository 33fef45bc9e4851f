"""Maps whose meaning depends on nothing arbitrary: principal-component partial maps are
oriented (a solver's sign choice changes nothing), signed attributions stay signed under
``postprocess="auto"``, and the model's own normalisation is used or asked for."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam
import torch

import ucag
from ucag.bases import adapters
from ucag.models import model_normalization


@pytest.fixture(scope="module")
def sample(sample_model, photos):
    return sample_model, torch.cat([photos["chelsea"], photos["coffee"]]), [285, 967]


def _flipping(project):
    """``project`` with every other map negated: another solver's equally valid answer."""

    def flipped(*args, **kwargs):
        maps = np.array(project(*args, **kwargs))
        maps[::2] *= -1
        return maps

    return flipped


@pytest.mark.parametrize(
    ("cam_class", "module", "smooth"),
    [("EigenCAM", "eigen_cam", False), ("EigenGradCAM", "eigen_grad_cam", False), ("GradCAM", "base_cam", True)],
    ids=["eigencam", "eigengradcam", "gradcam-eigen_smooth"],
)
def test_a_solvers_sign_changes_no_ucag_map(sample, monkeypatch, cam_class, module, smooth):
    sm, x, targets = sample
    with getattr(pytorch_grad_cam, cam_class)(sm.model, [sm.target_layer]) as cam:
        expected = ucag.UCAG(cam, units=3).explain(x, targets, eigen_smooth=smooth)
        target_module = getattr(pytorch_grad_cam, module)
        monkeypatch.setattr(target_module, "get_2d_projection", _flipping(target_module.get_2d_projection))
        flipped = ucag.UCAG(cam, units=3).explain(x, targets, eigen_smooth=smooth)
    assert torch.allclose(flipped.partials, expected.partials, atol=1e-6)
    assert torch.allclose(flipped.saliency, expected.saliency, atol=1e-6)


def test_orientation_removes_most_inverted_partials(sample, monkeypatch):
    """On the notebook photos (6 x 6 grid): partial maps whose most negative value outweighs
    the most positive one, with and without the orientation."""
    sm, x, targets = sample

    def inverted(partials: torch.Tensor) -> int:
        flat = partials.flatten(1)
        return int((flat.min(dim=1).values.abs() > flat.max(dim=1).values).sum())

    unoriented = []

    def spy(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        unoriented.append(maps)  # the solver's maps, before the orientation
        return orient(maps, reference)

    orient = adapters.oriented
    monkeypatch.setattr(adapters, "oriented", spy)
    with pytorch_grad_cam.EigenCAM(sm.model, [sm.target_layer]) as cam:
        oriented = inverted(ucag.UCAG(cam).explain(x, targets).partials)
    raw = inverted(torch.cat(unoriented))
    assert raw >= 10 and oriented <= raw // 4, (raw, oriented)


def test_the_base_eigen_map_in_comparisons_is_oriented_too(sample, monkeypatch):
    from ucag.eval.registry import explain_with

    sm, x, targets = sample
    expected = explain_with("eigencam", "base", sm.model, sm.target_layer, x, targets)
    monkeypatch.setattr(
        pytorch_grad_cam.eigen_cam, "get_2d_projection", _flipping(pytorch_grad_cam.eigen_cam.get_2d_projection)
    )
    assert torch.allclose(explain_with("eigencam", "base", sm.model, sm.target_layer, x, targets), expected, atol=1e-6)
    assert float(expected.max()) > 0.9  # min-max scaled, then blurred


def test_signed_captum_methods_stay_signed(sample):
    from captum.attr import InputXGradient, IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency

    sm, x, targets = sample
    model = sm.model
    kinds = {
        "InputXGradient": (InputXGradient(model), {}),
        "IntegratedGradients": (IntegratedGradients(model), {"n_steps": 4}),
        "NoiseTunnel(IntegratedGradients)": (NoiseTunnel(IntegratedGradients(model)), {"nt_samples": 2, "n_steps": 4}),
        "Saliency abs=False": (Saliency(model), {"abs": False}),
        "Saliency": (Saliency(model), {}),
        "LayerGradCam": (LayerGradCam(model, sm.target_layer), {}),
    }
    chosen = {
        name: ucag.UCAG(method, units=2, attribute_kwargs=options).postprocess
        for name, (method, options) in kinds.items()
    }
    assert chosen == {
        "InputXGradient": "none",
        "IntegratedGradients": "none",
        "NoiseTunnel(IntegratedGradients)": "none",
        "Saliency abs=False": "none",
        "Saliency": "cam",
        "LayerGradCam": "cam",
    }
    explanation = ucag.UCAG(InputXGradient(model), units=2).explain(x[:1], targets[:1])
    assert explanation.postprocess == "none"  # the Explanation says which post-processing ran
    assert float(explanation.saliency.min()) < 0 < float(explanation.saliency.max())  # evidence against the class kept
    assert torch.equal(explanation.saliency, explanation.raw)


def test_normalisation_comes_from_the_model_or_nowhere(sample_model):
    timm = pytest.importorskip("timm")
    sm = sample_model
    assert model_normalization(sm.model) == (sm.mean, sm.std)
    assert model_normalization(timm.create_model("resnet18", pretrained=False)) == (
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    )
    assert model_normalization(torch.nn.Conv2d(3, 3, 1)) is None

"""The parameter-randomisation sanity check (ucag.eval.sanity, docs/algorithm.md §6.8) on
the real sample model and a real photo: an edge detector (SobelCAM) survives the cascade,
Grad-CAM does not; both modes draw the same random parameters; the user's model is left
alone; the measures' values for constant maps; the runner's "randomization" columns; the
figures."""

from __future__ import annotations

import copy
import csv
import json

import matplotlib

matplotlib.use("Agg")  # the tests draw off-screen; ucag.viz itself never picks a backend

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from ucag import viz
from ucag.cli import main
from ucag.data import preprocess_image, sample_image
from ucag.eval import plot_randomization, plot_randomization_curves, randomization_check, registry_explainer
from ucag.eval.runner import summarize
from ucag.eval.sanity import MEASURES, map_similarities, randomization_stages, randomize

pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.sobel_cam import sobel_cam  # noqa: E402

CAT = 285  # ImageNet "Egyptian cat"
STAGES = 3
SIZE = 128  # smaller than the model's 224: fast on 2 CPU cores, and still classified right


@pytest.fixture(scope="module")
def photo(sample_model):
    return preprocess_image(sample_image("chelsea").rgb, sample_model.mean, sample_model.std, SIZE)


@pytest.fixture(scope="module")
def sobel(sample_model):
    """SobelCAM: the edges of the photo, whatever the model (Adebayo et al.'s edge detector)."""

    def explain(model, inputs, targets):
        rgb = (sample_model.denormalize(inputs).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return np.stack([sobel_cam(np.ascontiguousarray(image)).astype(np.float64) for image in rgb])

    return explain


@pytest.fixture(scope="module")
def cascades(sample_model, photo, sobel):
    gradcam = randomization_check(
        sample_model.model, registry_explainer("gradcam"), photo, [CAT], stages=STAGES, progress=False
    )
    edges = randomization_check(sample_model.model, sobel, photo, [CAT], stages=STAGES, progress=False)
    return gradcam, edges


def test_an_edge_detector_survives_the_cascade_and_gradcam_does_not(cascades):
    gradcam, edges = cascades
    assert gradcam.stage_names == edges.stage_names and len(gradcam.stages) == STAGES
    # measured (128 px, 3 stages): SobelCAM 1.000 in all measures at every stage; Grad-CAM's
    # Spearman -0.41, 0.27, 0.04, SSIM -0.02, 0.34, 0.40, HOG 0.26, 0.16, 0.16
    assert (edges.scores["spearman_abs"] > 0.9).all()
    assert (edges.scores["ssim"] > 0.9).all() and (edges.scores["hog"] > 0.9).all()
    assert (gradcam.scores["spearman_abs"] < 0.5).all()
    assert gradcam.mean("spearman_abs")[-1] < edges.mean("spearman_abs")[-1] - 0.5
    assert gradcam.mean("hog")[-1] < 0.5 and gradcam.mean("ssim")[-1] < 0.6
    for measure in MEASURES:
        assert gradcam.scores[measure].shape == (STAGES, 1)
        assert np.isfinite(gradcam.scores[measure]).all()
    assert gradcam.maps.shape == (STAGES, 1, SIZE, SIZE) and gradcam.trained_maps.shape == (1, SIZE, SIZE)
    assert gradcam.targets == [CAT]


def test_the_result_summarises_per_stage(cascades):
    gradcam, _ = cascades
    rows = gradcam.table()
    assert [r["stage"] for r in rows] == gradcam.stage_names
    assert rows[-1]["spearman_abs"] == pytest.approx(float(gradcam.scores["spearman_abs"][-1].mean()))
    text = gradcam.markdown()
    assert text.count("\n| ") == STAGES and "Spearman (abs)" in text and "cascading" in text
    assert gradcam.constant_maps.shape == (STAGES, 1) and rows[0]["constant_maps"] == int(gradcam.constant_maps[0, 0])
    with pytest.raises(ValueError, match="measure"):
        gradcam.mean("pearson")


def test_independent_mode_draws_the_same_parameters_as_the_cascade(sample_model, photo, cascades):
    gradcam, _ = cascades
    independent = randomization_check(
        sample_model.model,
        registry_explainer("gradcam"),
        photo,
        [CAT],
        mode="independent",
        stages=STAGES,
        progress=False,
    )
    assert independent.mode == "independent" and independent.stage_names == gradcam.stage_names
    # stage 0 randomises the same (top) stage with the same seed in both modes
    np.testing.assert_allclose(independent.maps[0], gradcam.maps[0], atol=1e-6)
    # later stages randomise one stage only, the cascade all above it too
    assert not np.allclose(independent.maps[1], gradcam.maps[1])
    for measure in MEASURES:
        assert np.isfinite(independent.scores[measure]).all()


def test_the_users_model_is_left_alone(sample_model, photo):
    model = copy.deepcopy(sample_model.model).train()
    model._fc.eval()  # a mix of modes must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    randomization_check(model, registry_explainer("gradcam"), photo, [CAT], stages=2, progress=False)
    randomize(model, stages=2)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    assert (
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
        == hooks
    )


TRACE = torch.zeros(1, 3, 64, 64)  # the stages' trace only needs the order of the calls


def test_stages_from_the_traced_forward_pass(sample_model):
    model = sample_model.model
    assert randomization_stages(model) == randomization_stages(model, sample=TRACE)  # any input size
    blocks = randomization_stages(model, sample=TRACE)
    names = [s.name for s in blocks]
    assert names[0] == "_fc" and names[1] == "_conv_head+_bn1" and names[-1] == "_conv_stem+_bn0"
    assert names[2:-1] == [f"_blocks.{k}" for k in range(15, -1, -1)]
    owners = {n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))}
    for spec in ("blocks", "modules", 6, 1):
        stages = randomization_stages(model, spec, TRACE)
        covered = [m for s in stages for m in s.modules]
        assert sorted(covered) == sorted(owners), spec  # every parameterised module, once
    assert len(randomization_stages(model, 6, TRACE)) == 6
    explicit = randomization_stages(model, ["_fc", ["_conv_head", "_bn1"], "_blocks.15"], TRACE)
    assert [s.modules for s in explicit][:2] == [("_fc",), ("_conv_head", "_bn1")]
    assert "_blocks.15._depthwise_conv" in explicit[2].modules


def test_parameters_the_model_holds_itself_are_the_stage_nearest_the_input():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.offset = nn.Parameter(torch.ones(3))
            self.conv = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x + self.offset[:, None, None]).mean((2, 3)))

    model = Tokens()
    stages = randomization_stages(model, sample=torch.zeros(1, 3, 32, 32))
    assert [s.name for s in stages] == ["head", "conv", "(Tokens)"]
    randomized = randomize(model, sample=torch.zeros(1, 3, 32, 32), seed=3)
    assert not torch.equal(randomized.offset, model.offset)  # the truncated-normal fallback
    assert float(randomized.offset.detach().abs().max()) <= 0.04 + 1e-6  # ±2σ, σ = 0.02


def test_randomize_is_seeded_and_reaches_every_stage(sample_model):
    model = sample_model.model
    a, b, c = (randomize(model, seed=seed, sample=TRACE) for seed in (0, 0, 1))
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        if p.dim() > 1:  # (norm layers reset to weight 1, bias 0 whatever the seed)
            assert not torch.equal(p, r), name
    trained = dict(model.named_parameters())
    for name, p in a.named_parameters():
        if p.dim() > 1:
            assert not torch.equal(p, trained[name]), name
    assert all(
        torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in a.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert not a.training
    top = randomize(model, upto=1, sample=TRACE)
    assert not torch.equal(top._fc.weight, model._fc.weight) and torch.equal(
        top._conv_head.weight, model._conv_head.weight
    )


def test_constant_maps_have_similarity_zero():
    rng = np.random.default_rng(0)
    varied = rng.random((2, 32, 32))
    zero = np.zeros((2, 32, 32))
    for measure, values in map_similarities(varied, zero).items():
        np.testing.assert_array_equal(values, 0.0, err_msg=measure)
    for measure, values in map_similarities(np.full((1, 32, 32), 0.3), np.full((1, 32, 32), 0.3)).items():
        np.testing.assert_array_equal(values, 0.0, err_msg=measure)
    for measure, values in map_similarities(varied, varied).items():
        np.testing.assert_allclose(values, 1.0, atol=1e-9, err_msg=measure)
    signed = varied - 0.5
    scores = map_similarities(signed, -signed)
    np.testing.assert_allclose(scores["spearman_signed"], -1.0, atol=1e-9)
    np.testing.assert_allclose(scores["spearman_abs"], 1.0, atol=1e-9)


def test_bad_arguments_name_the_argument(sample_model, photo, sobel):
    model = sample_model.model
    with pytest.raises(ValueError, match="mode"):
        randomization_check(model, sobel, photo, mode="both", progress=False)
    with pytest.raises(ValueError, match="stages"):
        randomization_check(model, sobel, photo, stages=0, progress=False)
    with pytest.raises(TypeError, match="stages"):
        randomization_check(model, sobel, photo, stages=True, progress=False)
    with pytest.raises(ValueError, match=r"stages\[1\]: 'nope'"):
        randomization_check(model, sobel, photo, stages=["_fc", "nope"], progress=False)
    with pytest.raises(ValueError, match="overlap"):
        randomization_stages(model, ["_blocks.15", "_blocks.15._bn0"])
    with pytest.raises(ValueError, match="no parameters"):
        randomization_stages(model, ["head_activation"])
    with pytest.raises(ValueError, match="stages"):
        randomization_stages(model, "layers")
    with pytest.raises(TypeError, match="explain"):
        randomization_check(model, "gradcam", photo, progress=False)
    with pytest.raises(ValueError, match="explain"):
        randomization_check(model, lambda m, x, t: torch.zeros(len(x), 8, 8), photo, progress=False)
    with pytest.raises(TypeError, match="explain"):
        randomization_check(model, lambda m, x, t: [0.0], photo, progress=False)
    with pytest.raises(ValueError, match="targets"):
        randomization_check(model, sobel, photo, [CAT, CAT], progress=False)
    with pytest.raises(ValueError, match="seed"):
        randomization_check(model, sobel, photo, seed=-1, progress=False)
    with pytest.raises(ValueError, match="inputs"):
        randomization_check(model, sobel, photo[0], progress=False)
    with pytest.raises(TypeError, match="model"):
        randomization_check("efficientnet", sobel, photo, progress=False)
    with pytest.raises(ValueError, match="upto"):
        randomize(model, upto=99)
    with pytest.raises(ValueError, match="method"):
        registry_explainer("nope")
    with pytest.raises(ValueError, match="variant"):
        registry_explainer("gradcam", "twice")
    with pytest.raises(ValueError, match="layer_name"):
        registry_explainer("gradcam", layer_name="nowhere")(model, photo, [CAT])
    with pytest.raises(ValueError, match="other"):
        map_similarities(np.zeros((1, 32, 32)), np.zeros((1, 32, 31)))
    with pytest.raises(ValueError, match="24"):
        map_similarities(np.zeros((1, 16, 16)), np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="NaN"):
        map_similarities(np.full((1, 32, 32), np.nan), np.zeros((1, 32, 32)))


def test_ucag_evaluate_writes_the_randomization_columns(tmp_path, capsys):
    argv = [
        "evaluate",
        "--samples",
        "--methods",
        "gradcam",
        "--variants",
        "base",
        "--limit",
        "1",
        "--metrics",
        "randomization",
    ]
    assert main(argv + ["--out", str(tmp_path), "--no-progress", "--device", "cpu"]) == 0
    assert "randomized Spearman ↓" in capsys.readouterr().out
    with open(tmp_path / "results.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    columns = ("randomization_spearman", "randomization_ssim", "randomization_hog")
    values = [float(rows[0][c]) for c in columns]
    assert all(-1.0 <= v <= 1.0 for v in values)
    assert values[0] < 0.5  # measured 0.07: Grad-CAM's map does not survive the randomised model
    assert json.loads((tmp_path / "config.json").read_text())["randomization_seed"] == 0
    summary = summarize(tmp_path, plot=False)
    assert [c.column for c in summary.cells] == list(columns)


def test_the_figures(sample_model, photo, cascades):
    gradcam, edges = cascades
    fig = plot_randomization(
        {"Grad-CAM": gradcam, "SobelCAM": edges}, image=photo, mean=sample_model.mean, std=sample_model.std
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * (2 + STAGES)  # photo, trained map, one per stage
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "trained", gradcam.stage_names[0]]
    plt.close(fig)
    fig = plot_randomization(gradcam)
    assert len(fig.axes) == 1 + STAGES
    plt.close(fig)
    fig = plot_randomization_curves({"Grad-CAM": gradcam, "SobelCAM": edges})
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="image_index"):
        plot_randomization(gradcam, image_index=1)
    with pytest.raises(ValueError, match="measures"):
        plot_randomization_curves(gradcam, measures=["pearson"])
    with pytest.raises(TypeError, match="results"):
        plot_randomization([gradcam])


def test_map_grid(sample_model, photo):
    maps = [np.random.default_rng(k).random((56, 56)) for k in range(3)]
    fig = viz.map_grid(
        {"a": maps, "b": [torch.from_numpy(m) for m in maps]},
        ["x", "y", "z"],
        image=photo,
        mean=sample_model.mean,
        std=sample_model.std,
        over_image=True,
    )
    assert len(fig.axes) == 2 * 4
    plt.close(fig)
    fig = viz.map_grid({"zero": [np.zeros((8, 8))]})  # an all-zero map is drawn, black
    assert len(fig.axes) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="rows\\['b'\\]"):
        viz.map_grid({"a": maps, "b": maps[:2]})
    with pytest.raises(ValueError, match="column_titles"):
        viz.map_grid({"a": maps}, ["x"])
    with pytest.raises(ValueError, match="over_image"):
        viz.map_grid({"a": maps}, over_image=True)
    with pytest.raises(TypeError, match="rows"):
        viz.map_grid([maps])

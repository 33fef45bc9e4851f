"""Precision and memory layout (docs/algorithm.md §10): the options on UCAG, the metrics,
evaluate, tune and the CLI; the model left as it was; bad values refused before any work;
bf16 maps against fp32 on the pretrained sample model; evaluate's DataLoader pipeline."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM
from torch import nn

import ucag
from ucag.cli import main
from ucag.eval import metrics
from ucag.eval.datasets import SampleImages
from ucag.eval.runner import default_workers, evaluate
from ucag.eval.tuning import tune
from ucag.precision import ComputePlan, compute_plan

SMALL = {"units": 2, "patch_size": 20, "scale": 1.6}


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()


class Recorder:
    """What the model's first convolution saw: autocast on or off, the input's layout."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[tuple[bool, bool]] = []
        self.handle = model[0].register_forward_pre_hook(self.record)

    def record(self, module: nn.Module, args: Any) -> None:
        x = args[0]
        self.calls.append((torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=torch.channels_last)))


def state_of(model: nn.Module) -> list[tuple[Any, ...]]:
    """Everything a precision option could change: dtypes, layouts, values, flags, hooks."""
    return [
        (name, t.dtype, t.stride(), t.detach().clone(), t.requires_grad)
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    ] + [(len(m._forward_hooks), len(m._forward_pre_hooks), m.training) for m in model.modules()]


def assert_same_state(before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]) -> None:
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        for x, y in zip(b, a, strict=True):
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


# ---- the plan ---------------------------------------------------------------------------


def test_auto_channels_last_only_where_the_precision_is_lowered_and_there_are_convolutions():
    conv = small_model()
    assert compute_plan(conv) == ComputePlan("fp32", False, "cpu")
    assert compute_plan(conv, "bf16") == ComputePlan("bf16", True, "cpu")
    assert compute_plan(conv, "bf16", False).channels_last is False
    assert compute_plan(conv, "fp32", True).channels_last is True
    assert compute_plan(nn.Linear(3, 2), "bf16").channels_last is False  # nothing to lay out


@pytest.mark.parametrize(
    ("precision", "channels_last", "error", "message"),
    [
        ("float16", "auto", ValueError, "precision: expected 'fp32', 'bf16' or 'fp16', got 'float16'"),
        (16, "auto", ValueError, "precision: expected"),
        ("fp16", "auto", ValueError, "precision: 'fp16' on the CPU is slower than float32"),
        ("bf16", "yes", TypeError, "channels_last: expected True, False or 'auto', got 'yes'"),
        ("bf16", 1, TypeError, "channels_last: expected True, False or 'auto', got 1"),
    ],
)
def test_bad_values_are_refused_before_any_work(precision, channels_last, error, message):
    model = small_model()
    recorder = Recorder(model)
    with pytest.raises(error, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        compute_plan(model, precision, channels_last)
    with pytest.raises(error, match="^" + message.split(":")[0]):
        ucag.UCAG(GradCAM(model=model, target_layers=[model[3]]), precision=precision, channels_last=channels_last)
    with pytest.raises(error, match="^" + message.split(":")[0]):
        metrics.deletion(model, torch.rand(1, 3, 24, 24), torch.rand(1, 24, 24), [0], precision=precision,
                         channels_last=channels_last)  # fmt: skip
    if precision in ("float16", 16) or channels_last in ("yes", 1):  # checked without a model too
        with pytest.raises(error, match="^" + message.split(":")[0]):
            ucag.UCAG.check_settings(precision=precision, channels_last=channels_last)
    assert recorder.calls == []  # the model never ran


# ---- UCAG --------------------------------------------------------------------------------


@pytest.mark.parametrize("cam_class", [GradCAM, GradCAMPlusPlus, LayerCAM])
def test_bf16_runs_the_patch_passes_under_autocast_channels_last_and_keeps_the_maps_float32(cam_class):
    model = small_model()
    x = torch.rand(2, 3, 32, 32)
    cam = cam_class(model=model, target_layers=[model[3]])  # grad-cam's own hooks are part of the state
    before = state_of(model)
    reference = ucag.UCAG(cam, **SMALL).explain(x, [0, 1])
    recorder = Recorder(model)
    explanation = ucag.UCAG(cam, precision="bf16", **SMALL).explain(x, [0, 1])
    recorder.handle.remove()
    assert (explanation.precision, explanation.channels_last) == ("bf16", True)
    patch_calls = [c for c in recorder.calls if c != (False, False)]  # the target check runs in fp32
    assert patch_calls and all(c == (True, True) for c in patch_calls)
    for name in ("saliency", "raw", "partials", "probabilities", "weights"):
        value = getattr(explanation, name)
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value).all(), name
    # bf16 keeps about 3 significant digits: the maps move, a little
    assert 0 < float((explanation.saliency - reference.saliency).abs().max()) < 0.1
    assert "bf16 channels-last" in explanation.facts()
    assert_same_state(before, state_of(model))  # no dtype, layout, value, flag or hook changed


def test_fp32_default_is_unchanged_and_channels_last_alone_keeps_float32():
    model = small_model()
    cam = GradCAM(model=model, target_layers=[model[3]])
    x = torch.rand(1, 3, 32, 32)
    recorder = Recorder(model)
    plain = ucag.UCAG(cam, **SMALL).explain(x, [2])
    assert all(c == (False, False) for c in recorder.calls)
    assert (plain.precision, plain.channels_last) == ("fp32", False)
    recorder.calls.clear()
    laid_out = ucag.UCAG(cam, channels_last=True, **SMALL).explain(x, [2])
    assert (False, True) in recorder.calls and not any(autocast for autocast, _ in recorder.calls)
    torch.testing.assert_close(laid_out.saliency, plain.saliency, rtol=1e-4, atol=1e-5)
    assert "fp32 channels-last" in laid_out.facts() and "fp32" not in plain.facts()


def test_a_base_not_measured_in_bf16_runs_in_float32_with_a_warning():
    model = small_model()
    x = torch.rand(1, 3, 32, 32)
    recorder = Recorder(model)
    for base in (EigenCAM(model=model, target_layers=[model[3]]), lambda patches, targets: patches.sum(1)):
        with pytest.warns(
            UserWarning, match=r"^precision: .* runs in float32; bf16 is lowered only for gradient-based"
        ):
            explainer = ucag.UCAG(base, model=model, precision="bf16", **SMALL)
        assert explainer.explain(x, [1]).precision == "fp32"
    assert not any(autocast for autocast, _ in recorder.calls)


def test_the_precision_shows_in_the_repr():
    model = small_model()
    explainer = ucag.UCAG(GradCAM(model=model, target_layers=[model[3]]), precision="bf16", channels_last=False)
    assert "precision='bf16', channels_last=False)" in repr(explainer)


# ---- the metrics and tune -------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["deletion", "insertion", "road"])
def test_metrics_forwards_run_at_the_precision_asked(metric):
    model = small_model()
    x, saliency = torch.rand(2, 3, 24, 24), torch.rand(2, 24, 24)
    options = {"step": 96} if metric != "road" else {"percentiles": [20, 60]}
    before = state_of(model)
    reference = getattr(metrics, metric)(model, x, saliency, [0, 3], **options)
    recorder = Recorder(model)
    lowered = getattr(metrics, metric)(model, x, saliency, [0, 3], precision="bf16", **options)
    recorder.handle.remove()
    assert (True, True) in recorder.calls  # the perturbed inputs: autocast, channels-last
    assert lowered.curves.dtype == np.float32 and np.isfinite(lowered.curves).all()
    np.testing.assert_allclose(lowered.values, reference.values, atol=0.02)
    assert_same_state(before, state_of(model))


def test_tune_takes_the_precision():
    model = small_model()
    cam = GradCAM(model=model, target_layers=[model[3]])
    recorder = Recorder(model)
    result = tune(
        model, cam, torch.rand(1, 3, 32, 32), [1], space={"units": [2], "patch_fraction": [0.6]},
        precision="bf16", progress=False, step=256,
    )  # fmt: skip
    assert (True, True) in recorder.calls
    assert all(np.isfinite(r.deletion).all() and np.isfinite(r.insertion).all() for r in result.rows)


# ---- evaluate ------------------------------------------------------------------------------

EVALUATE = {
    "methods": ["gradcam"],
    "variants": ["base", "ucag"],
    "metrics": ["deletion", "insertion"],
    "input_size": 32,
    "step": 128,
    "ucag_options": SMALL,
    "mean": (0.5,) * 3,
    "std": (0.25,) * 3,
    "progress": False,
    "plot": False,
}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_records_the_precision_in_every_row_and_in_the_config(tmp_path):
    model = small_model()
    dataset = SampleImages(("astronaut", "rocket"))
    evaluate(model, model[3], dataset, tmp_path / "bf16", precision="bf16", **EVALUATE)
    evaluate(model, model[3], dataset, tmp_path / "fp32", **EVALUATE)
    lowered, plain = _rows(tmp_path / "bf16" / "results.csv"), _rows(tmp_path / "fp32" / "results.csv")
    assert {(r["precision"], r["channels_last"]) for r in lowered} == {("bf16", "true")}
    assert {(r["precision"], r["channels_last"]) for r in plain} == {("fp32", "false")}
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert (config["precision"], config["channels_last"]) == ("bf16", "auto")
    for a, b in zip(lowered, plain, strict=True):
        assert abs(float(a["deletion"]) - float(b["deletion"])) < 0.02
    # a rerun at another precision is another run: refused, the folder untouched
    with pytest.raises(ValueError, match=r"^out: .* holds a run with other settings \(precision differ\)"):
        evaluate(model, model[3], dataset, tmp_path / "bf16", **EVALUATE)


def test_evaluate_refuses_the_options_where_they_do_not_belong(tmp_path):
    model = small_model()
    dataset = SampleImages(("astronaut",))
    with pytest.raises(ValueError, match=r"^ucag_options: precision is evaluate's own option"):
        evaluate(model, model[3], dataset, tmp_path / "a", **{**EVALUATE, "ucag_options": {"precision": "bf16"}})
    with pytest.raises(ValueError, match=r"^precision: 'fp16' on the CPU"):
        evaluate(model, model[3], dataset, tmp_path / "b", precision="fp16", **EVALUATE)
    with pytest.raises(ValueError, match=r"^workers: expected a number of processes >= 0 or None, got -1"):
        evaluate(model, model[3], dataset, tmp_path / "c", workers=-1, **EVALUATE)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_photos_read_by_worker_processes_give_the_same_files_as_in_process(tmp_path):
    model = small_model()
    dataset = SampleImages(("astronaut", "rocket"))
    for workers in (0, 2):
        evaluate(model, model[3], dataset, tmp_path / str(workers), workers=workers, **EVALUATE)
    for name in ("results.csv", "curves.csv", "config.json"):
        assert (tmp_path / "0" / name).read_text() == (tmp_path / "2" / name).read_text(), name
    assert 0 <= default_workers() <= 4


class _RunsOutAbove:
    """A device with room for ``limit`` patches per forward/backward."""

    def __init__(self, limit: int) -> None:
        self.limit, self.sizes = limit, []

    def __call__(self, module: nn.Module, args: Any) -> None:
        if torch.is_grad_enabled():
            self.sizes.append(len(args[0]))
            if len(args[0]) > self.limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")


def test_evaluate_learns_ucags_batch_size_once_for_the_run(tmp_path):
    model = small_model()
    oom = _RunsOutAbove(2)
    handle = model.register_forward_pre_hook(oom)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            evaluate(
                model, model[3], SampleImages(("astronaut", "rocket")), tmp_path,
                **{**EVALUATE, "variants": ["ucag"], "ucag_options": {**SMALL, "batch_size": 4}},
            )  # fmt: skip
    finally:
        handle.remove()
    backoffs = [w for w in caught if "out of memory with 4 patches per chunk" in str(w.message)]
    assert len(backoffs) == 1  # the first photo backs off; the second starts at 2
    assert oom.sizes.count(4) == 1 and max(oom.sizes[1:]) == 2


# ---- the command line --------------------------------------------------------------------


def test_the_cli_refuses_fp16_on_the_cpu_in_one_line(tmp_path, capsys):
    assert main(["evaluate", "--samples", "--precision", "fp16", "--device", "cpu", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ucag: error: --precision: 'fp16' on the CPU is slower than float32") and err.count("\n") == 1
    assert not (tmp_path / "e").exists()
    assert main(["explain", "coffee", "--channels-last", "maybe"]) == 2
    assert "--channels-last: invalid choice: 'maybe'" in capsys.readouterr().err
    assert main(["evaluate", "--samples", "--workers", "-1"]) == 2
    assert "--workers: expected a whole number >= 0, got '-1'" in capsys.readouterr().err


# ---- the pretrained sample model: bf16 maps against fp32 -----------------------------------------


@pytest.mark.parametrize("cam_class", [GradCAM, LayerCAM])
def test_bf16_maps_rank_the_pixels_as_fp32_maps_do(sample_model, photos, cam_class):
    """benchmarks/precision_faithfulness.py has the full table; here one photo per method."""
    from scipy.stats import spearmanr

    cam = cam_class(model=sample_model.model, target_layers=[sample_model.target_layer])
    x = photos["chelsea"]
    fp32 = ucag.UCAG(cam).explain(x, [285])
    bf16 = ucag.UCAG(cam, precision="bf16").explain(x, [285])
    rho = spearmanr(fp32.saliency.flatten().numpy(), bf16.saliency.flatten().numpy()).statistic
    assert rho >= 0.99
    assert float((fp32.weights - bf16.weights).abs().max()) < 0.15  # exp(p): p moves by a few hundredths
    deletion = [metrics.deletion(sample_model.model, x, e.saliency, [285]).mean for e in (fp32, bf16)]
    assert abs(deletion[0] - deletion[1]) < 0.01


@pytest.mark.pretrained  # the command line on the sample model
def test_the_cli_evaluates_in_bf16_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["evaluate", "--samples", "--methods", "gradcam", "--metrics", "deletion", "insertion", "--limit", "1"]
    assert (
        main([*argv, "--precision", "bf16", "--units", "2", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    )
    rows = _rows(out / "results.csv")
    assert {(r["precision"], r["channels_last"]) for r in rows} == {("bf16", "true")}
    assert all(0 <= float(r["insertion"]) <= 1 for r in rows)
    assert "| UCAG(Grad-CAM) |" in capsys.readouterr().out

"""A battery of bad and odd inputs across the explainer, its bases, the baselines, the
metrics, evaluate and tune: each raises the expected exception with a message that starts
with the argument to fix. Then the cases that used to go wrong silently (a model in train
mode, soft masks, frozen models, out-of-memory), with the right answer asserted.

The kernels' and the grid's own bad inputs are in tests/test_errors.py, the command line's
in tests/test_cli.py."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import ucag
from conftest import assert_close_across_batches
from ucag.baselines import CAMERAS, Upscale
from ucag.bases import LRP, FullGrad
from ucag.eval import metrics
from ucag.eval.runner import evaluate
from ucag.eval.tuning import tune

CLASSES = 4


class SmallNet(nn.Module):
    """A CNN with batch norm and dropout, whose train mode changes its outputs and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class AuxFirstNet(SmallNet):
    """A tuple whose first element is not the logits (a tuple starting with them is fine)."""

    def forward(self, x: torch.Tensor) -> Any:  # type: ignore[override]
        return "aux", super().forward(x)


class ScoresDictNet(SmallNet):
    """A dict without a "logits" entry (one with it is fine)."""

    def forward(self, x: torch.Tensor) -> Any:  # type: ignore[override]
        return {"scores": super().forward(x)}


class FlatNet(SmallNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).sum(dim=1)


def small_model(cls: type[nn.Module] = SmallNet) -> nn.Module:
    torch.manual_seed(0)
    model = cls()
    with torch.no_grad():  # batch-norm statistics that differ from a batch's own
        bn = model.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


MODEL = small_model()
LAYER = MODEL.features[4]
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
SMALL = {"units": 2, "scale": 1.5}


def mean_map(patches: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return patches.mean(dim=1)


def gradcam() -> GradCAM:
    return GradCAM(MODEL, [LAYER])


def raises(error: type[Exception], argument: str, call: Callable[[], Any]) -> None:
    with pytest.raises(error, match=f"^{re.escape(argument)}"):
        call()


# ---- the explainer's settings -------------------------------------------------------------

SETTINGS = [
    ({"units": 0}, ValueError, "units"),
    ({"units": -3}, ValueError, "units"),
    ({"units": 2.5}, TypeError, "units"),
    ({"units": True}, TypeError, "units"),
    ({"units": "6"}, TypeError, "units"),
    ({"patch_size": 0}, ValueError, "patch_size"),
    ({"patch_size": (16,)}, TypeError, "patch_size"),
    ({"patch_size": (0, 5)}, ValueError, "patch_size"),
    ({"patch_size": 1.5}, ValueError, "patch_size"),
    ({"patch_size": -0.2}, ValueError, "patch_size"),
    ({"patch_size": "whole"}, TypeError, "patch_size"),
    ({"scale": 0}, ValueError, "scale"),
    ({"scale": -1.0}, ValueError, "scale"),
    ({"scale": float("nan")}, ValueError, "scale"),
    ({"scale": "2"}, TypeError, "scale"),
    ({"weighting": "softmax"}, ValueError, "weighting"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": -1}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"batch_size": True}, TypeError, "batch_size"),
    ({"batch_size": "big"}, TypeError, "batch_size"),
    ({"postprocess": "minmax"}, ValueError, "postprocess"),
    ({"blur": (4, 3.0)}, ValueError, "blur"),
    ({"blur": (5, 0)}, ValueError, "blur"),
    ({"blur": (5,)}, TypeError, "blur"),
    ({"blur": "gauss"}, TypeError, "blur"),
    ({"global_view": "sum"}, ValueError, "global_view"),
    ({"global_weight": 1.5}, ValueError, "global_weight"),
    ({"global_weight": "half"}, TypeError, "global_weight"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    SETTINGS,
    ids=[f"{next(iter(k))}={next(iter(k.values()))!r}" for k, _, _ in SETTINGS],
)
def test_bad_settings(kwargs, error, argument):
    raises(error, argument, lambda: ucag.UCAG(mean_map, model=MODEL, **kwargs))


def test_bad_settings_are_refused_before_the_base_is_touched():
    cam = gradcam()
    with pytest.raises(ValueError, match="^units"):
        ucag.UCAG(cam, units=0)
    assert all(not h for h in (LAYER._forward_hooks,)) or cam.activations_and_grads is not None
    cam.activations_and_grads.release()


BASES = [
    (lambda: ucag.UCAG(42), TypeError, "base"),
    (lambda: ucag.UCAG(mean_map), ValueError, "model"),
    (lambda: ucag.UCAG(gradcam(), attribute_kwargs={"n_steps": 3}), TypeError, "attribute_kwargs"),
    (lambda: ucag.UCAG(LRP(MODEL), attribute_kwargs={"epsilon": 1.0}), TypeError, "LRP"),
    (lambda: Upscale(mean_map, 0, model=MODEL), ValueError, "factor"),
    (lambda: Upscale(mean_map, "2", model=MODEL), TypeError, "factor"),
    (lambda: CAMERAS(MODEL, nn.Conv2d(3, 3, 1)), ValueError, "target_layer"),
    (lambda: CAMERAS(MODEL, LAYER, resolutions=[]), ValueError, "resolutions"),
    (lambda: CAMERAS(MODEL, LAYER, resolutions=[(32, "a")]), TypeError, "resolutions"),
    (lambda: CAMERAS(MODEL, LAYER, batch_size=0), ValueError, "batch_size"),
    (lambda: LRP(MODEL, composite="nope"), ValueError, "composite"),
    (lambda: LRP("model"), TypeError, "model"),
    (lambda: FullGrad(MODEL, chunk_size=0), ValueError, "chunk_size"),
]


@pytest.mark.parametrize(("build", "error", "argument"), BASES, ids=[f"base-{i}" for i in range(len(BASES))])
def test_bad_bases(build, error, argument):
    raises(error, argument, build)


# ---- explaining: inputs and targets, for every kind of base --------------------------------


def _captum():
    from captum.attr import Saliency

    return Saliency(MODEL)


def _zennit():
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    return Gradient(MODEL, EpsilonPlusFlat())


BASE_FACTORIES = {
    "gradcam": gradcam,
    "captum": _captum,
    "zennit": _zennit,
    "lrp": lambda: LRP(MODEL),
    "callable": lambda: mean_map,
}

CALLS = [
    (X.numpy(), None, TypeError, "input_tensor"),
    (X[0], None, ValueError, "input_tensor"),
    (X.long(), None, TypeError, "input_tensor"),
    (X[:0], None, ValueError, "input_tensor"),
    (X, [1], ValueError, "targets"),
    (X, torch.tensor([1.0, 2.0]), TypeError, "targets"),
    (X, "12", TypeError, "targets"),
    (X, [5000, 1], ValueError, "targets"),
    (X, [-1, 1], ValueError, "targets"),
    (X, [CLASSES, 0], ValueError, "targets"),
    (X, [ClassifierOutputTarget(99), ClassifierOutputTarget(0)], ValueError, "targets"),
    (X, [object(), 1], TypeError, "targets"),
]


@pytest.mark.parametrize("base", list(BASE_FACTORIES))
@pytest.mark.parametrize(("x", "targets", "error", "argument"), CALLS, ids=[f"call-{i}" for i in range(len(CALLS))])
def test_bad_calls_for_every_base(base, x, targets, error, argument):
    explainer = ucag.UCAG(BASE_FACTORIES[base](), model=MODEL, **SMALL)
    raises(error, argument, lambda: explainer.explain(x, targets))


def test_an_out_of_range_target_is_refused_before_any_base_runs():
    calls = []

    def base(patches: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(len(patches))
        return patches.mean(dim=1)

    raises(
        ValueError,
        "targets: class indices must lie in [0, 4)",
        lambda: ucag.UCAG(base, model=MODEL, **SMALL).explain(X, [1, 4]),
    )
    assert calls == []


def _returning(value: Any) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    return lambda patches, targets: value(patches) if callable(value) else value


RESULTS = [
    (_returning(None), TypeError, "base"),
    (_returning(lambda p: p.mean(dim=1)[:-1]), ValueError, "base"),
    (_returning(lambda p: np.array([["a"]] * len(p))), TypeError, "base"),
    (_returning(lambda p: p.mean(dim=(1, 2, 3))), ValueError, "base"),
    (_returning(lambda p: p[:, 0, :, : 5 + len(p)]), ValueError, "base"),
]


@pytest.mark.parametrize(
    ("fn", "error", "argument"), RESULTS, ids=["none", "too-few", "strings", "1-d", "sizes-differ"]
)
def test_callable_results_are_checked(fn, error, argument):
    raises(error, argument, lambda: ucag.UCAG(fn, model=MODEL, units=3, scale=1.0, batch_size=4).explain(X, [0, 1]))


@pytest.mark.parametrize(
    ("cls", "error"), [(AuxFirstNet, TypeError), (ScoresDictNet, TypeError)], ids=["tuple", "dict"]
)
@pytest.mark.parametrize("targets", [None, [0, 1]], ids=["predicted", "given"])
def test_models_that_do_not_return_logits(cls, error, targets):
    model = small_model(cls)
    raises(error, "model", lambda: ucag.UCAG(mean_map, model=model, **SMALL).explain(X, targets))


class GridOutputNet(SmallNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, :, None].expand(-1, -1, 2)


@pytest.mark.parametrize("targets", [None, [0, 1]], ids=["predicted", "given"])
def test_outputs_that_fit_no_target_are_refused_naming_both(targets):
    model = small_model(GridOutputNet)
    raises(ValueError, "targets", lambda: ucag.UCAG(mean_map, model=model, **SMALL).explain(X, targets))
    with pytest.raises(ValueError, match=r"\(2, 4, 2\)|\(1, 4, 2\)"):
        ucag.UCAG(mean_map, model=model, **SMALL).explain(X, targets)


def test_a_one_logit_model_is_a_binary_classifier_which_index_bases_refuse():
    # (B,) outputs are binary logits (ucag.targets); a plain callable takes class indices only
    model = small_model(FlatNet)
    raises(TypeError, "targets", lambda: ucag.UCAG(mean_map, model=model, **SMALL).explain(X, [0, 1]))


def test_a_released_explainer_says_so():
    with ucag.UCAG(gradcam(), **SMALL) as explainer:
        explainer.explain(X, [0, 1])
    raises(RuntimeError, "UCAG: this explainer's with block has ended", lambda: explainer.explain(X, [0, 1]))
    raises(RuntimeError, "UCAG", lambda: explainer(input_tensor=X, targets=[0, 1]))


@pytest.mark.parametrize(
    ("build", "kwargs", "argument"),
    [
        (_captum, {"aug_smooth": True}, "aug_smooth"),
        (lambda: mean_map, {"eigen_smooth": True}, "eigen_smooth"),
        (_zennit, {"aug_smooth": True}, "aug_smooth"),
        (lambda: LRP(MODEL), {"eigen_smooth": True}, "eigen_smooth"),
    ],
    ids=["captum", "callable", "zennit", "lrp"],
)
def test_smoothing_options_a_base_cannot_honour(build, kwargs, argument):
    raises(ValueError, argument, lambda: ucag.UCAG(build(), model=MODEL, **SMALL).explain(X, [0, 1], **kwargs))


def test_cameras_and_upscale_inputs():
    cameras = CAMERAS(MODEL, LAYER, resolutions=[32])
    raises(ValueError, "aug_smooth", lambda: cameras(X, [0, 1], aug_smooth=True))
    raises(ValueError, "targets", lambda: cameras.explain(X, [0, 7]))
    raises(ValueError, "targets", lambda: Upscale(mean_map, 1.5, model=MODEL).explain(X, [0, -2]))
    raises(
        ValueError, "patch_size", lambda: ucag.UCAG(mean_map, model=MODEL, units=2, patch_size=40).explain(X, [0, 1])
    )


# ---- metrics -------------------------------------------------------------------------------

MAPS = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(2))
MASKS = torch.zeros(2, 32, 32, dtype=torch.bool)
MASKS[:, 8:20, 8:20] = True

METRIC_CASES = [
    (lambda: metrics.deletion(MODEL, X, MAPS, [0, 1], batch_size=0), ValueError, "batch_size"),
    (lambda: metrics.insertion(MODEL, X, MAPS, [0, 1], batch_size=-3), ValueError, "batch_size"),
    (lambda: metrics.map_density(MODEL, X, MAPS, [0, 1], batch_size=1.5), TypeError, "batch_size"),
    (lambda: metrics.insertion(MODEL, X, MAPS, [5000, 1]), ValueError, "targets"),
    (lambda: metrics.deletion(MODEL, X, MAPS, [-1, 1]), ValueError, "targets"),
    (lambda: metrics.map_density(MODEL, X, MAPS, [0, CLASSES]), ValueError, "targets"),
    (lambda: metrics.deletion(MODEL, X, MAPS, [0.0, 1.0]), ValueError, "targets"),
    (lambda: metrics.deletion(MODEL, X, MAPS, [0]), ValueError, "targets"),
    (lambda: metrics.deletion(MODEL, X, MAPS, [0, 1], step=0), ValueError, "step"),
    (lambda: metrics.deletion(MODEL, X, MAPS[:, :16], [0, 1]), ValueError, "saliency"),
    (lambda: metrics.deletion(MODEL, X, MAPS[:1], [0, 1]), ValueError, "saliency"),
    (lambda: metrics.deletion(MODEL, X, MAPS * float("nan"), [0, 1]), ValueError, "saliency"),
    (lambda: metrics.deletion(MODEL, X.numpy(), MAPS, [0, 1]), ValueError, "inputs"),
    (lambda: metrics.deletion(small_model(AuxFirstNet), X, MAPS, [0, 1]), TypeError, "model"),
    (lambda: metrics.map_density(MODEL, X, torch.ones(2, 32, 32), [0, 1]), ValueError, "saliency"),
    (lambda: metrics.pointing_game(MAPS, MASKS.float()), TypeError, "masks"),
    (lambda: metrics.energy_pointing_game(MAPS, np.where(MASKS.numpy(), 1.0, 0.2)), TypeError, "masks"),
    (lambda: metrics.pointing_game(MAPS, np.full((2, 32, 32), "x")), TypeError, "masks"),
    (lambda: metrics.pointing_game(MAPS, MASKS[:, :16]), ValueError, "masks"),
    (lambda: metrics.energy_pointing_game(MAPS, torch.zeros(2, 32, 32, dtype=torch.bool)), ValueError, "masks"),
    (lambda: metrics.segmentation_scores(MAPS, MASKS, threshold="median"), ValueError, "threshold"),
    (lambda: metrics.pointing_game(MAPS[0], MASKS[0]), ValueError, "saliency"),
]


@pytest.mark.parametrize(
    ("call", "error", "argument"), METRIC_CASES, ids=[f"metric-{i}" for i in range(len(METRIC_CASES))]
)
def test_bad_metric_inputs(call, error, argument):
    raises(error, argument, call)


def test_integer_masks_count_nonzero_as_the_object():
    as_int = MASKS.to(torch.uint8) * 3
    np.testing.assert_array_equal(
        metrics.energy_pointing_game(MAPS, as_int).values, metrics.energy_pointing_game(MAPS, MASKS).values
    )
    np.testing.assert_array_equal(
        metrics.pointing_game(MAPS, as_int.numpy()).values, metrics.pointing_game(MAPS, MASKS).values
    )


# ---- evaluate and tune: options checked before any work or file ------------------------------

EVALUATE_CASES = [
    ({"ucag_options": {"units": 0}}, ValueError, "ucag_options: units"),
    ({"ucag_options": {"batch_size": 0}}, ValueError, "ucag_options: batch_size"),
    ({"ucag_options": {"unknown": 1}}, TypeError, "ucag_options: unknown"),
    ({"ucag_options": [("units", 2)]}, TypeError, "ucag_options"),
    ({"baseline_options": {"nope": {}}}, ValueError, "baseline_options"),
    ({"baseline_options": {"upscale": 2}}, TypeError, "baseline_options"),
    ({"metric_batch_size": 0}, ValueError, "metric_batch_size"),
    ({"metrics": ["nope"]}, ValueError, "metrics"),
    ({"methods": ["nope"]}, ValueError, "methods"),
    ({"variants": ["nope"]}, ValueError, "variants"),
    ({"blur": (4, 1.0)}, ValueError, "blur"),
    ({"std": (0.0, 1.0, 1.0)}, ValueError, "std"),
    ({"mean": ()}, ValueError, "mean"),
    ({"input_size": 0}, ValueError, "input_size"),
    ({"step": 0}, ValueError, "step"),
    ({"limit": 0}, ValueError, "limit"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    EVALUATE_CASES,
    ids=[next(iter(k)) + f"-{i}" for i, (k, _, _) in enumerate(EVALUATE_CASES)],
)
def test_evaluate_checks_every_option_before_writing(tmp_path, kwargs, error, argument):
    out = tmp_path / "run"
    normalization = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}  # the small model has none of its own
    raises(
        error,
        argument,
        lambda: evaluate(MODEL, LAYER, "samples", out, progress=False, plot=False, **{**normalization, **kwargs}),
    )
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({}, "mean: cannot tell how SmallNet normalises"), ({"mean": (0.5, 0.5, 0.5)}, "std: give mean and std together")],
    ids=["none", "mean-only"],
)
def test_evaluate_never_guesses_the_normalisation(tmp_path, kwargs, argument):
    """A model that does not say how its inputs are normalised needs mean= and std=."""
    raises(
        ValueError,
        argument,
        lambda: evaluate(MODEL, LAYER, "samples", tmp_path / "run", progress=False, plot=False, **kwargs),
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"objective": "auc"}, ValueError, "objective"),
        ({"space": {"nope": [1]}}, ValueError, "space"),
        ({"space": []}, ValueError, "space"),
    ],
    ids=["objective", "space-key", "space-empty"],
)
def test_tune_options(kwargs, error, argument):
    raises(error, argument, lambda: tune(MODEL, mean_map, X, [0, 1], progress=False, **kwargs))


# ---- what used to go wrong silently ---------------------------------------------------------


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def _gradcam_run(m: nn.Module) -> Callable[[], torch.Tensor]:
    explainer = ucag.UCAG(GradCAM(m, [m.features[4]]), batch_size=3, **SMALL)  # grad-cam's constructor calls eval()
    return lambda: explainer.explain(X, [0, 1]).raw


@pytest.mark.parametrize(
    "prepare",
    [
        _gradcam_run,
        lambda m: lambda: ucag.UCAG(mean_map, model=m, batch_size=5, **SMALL).explain(X, None).raw,
        lambda m: lambda: CAMERAS(m, m.features[4], resolutions=[32, 40]).explain(X, [0, 1]).raw,
        lambda m: lambda: torch.from_numpy(LRP(m)(X, [0, 1])),
        lambda m: lambda: torch.from_numpy(metrics.deletion(m, X, MAPS, [0, 1], batch_size=3).curves),
        lambda m: lambda: torch.from_numpy(metrics.map_density(m, X, MAPS, [0, 1], batch_size=3)[0].values),
        lambda m: (
            lambda: torch.from_numpy(
                tune(m, mean_map, X, [0, 1], space={"units": (2,)}, progress=False).rows[0].deletion
            )
        ),
    ],
    ids=["ucag-gradcam", "ucag-callable", "cameras", "lrp", "deletion", "density", "tune"],
)
def test_a_model_in_train_mode_is_run_in_eval_mode_and_left_as_it_was(prepare):
    reference = prepare(small_model())()
    model = small_model()
    run = prepare(model)
    model.train()
    before = _buffers(model)
    result = run()
    assert model.training and all(m.training for m in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} changed"
    torch.testing.assert_close(result, reference)  # what eval mode gives: no dropout, running statistics


@pytest.mark.batch_comparison
def test_in_train_mode_the_maps_do_not_depend_on_batch_size():
    """Batch statistics or dropout would make a patch's logits depend on its batch-mates (by
    1e-2 and more); in eval mode only float32 rounding differs between batch sizes."""
    model = small_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = [ucag.UCAG(mean_map, model=model, batch_size=b, **SMALL).explain(X, [0, 1]).raw for b in (1, 3, 8)]
    assert_close_across_batches(maps[1], maps[0])
    assert_close_across_batches(maps[2], maps[0])
    assert model.training and all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items()
    )  # running statistics untouched


def test_a_soft_mask_is_refused_not_read_as_all_object():
    soft = np.where(MASKS.numpy(), 1.0, 0.2).astype(np.float32)  # 0.2 background: `!= 0` made it all object
    with pytest.raises(TypeError, match="threshold a soft mask"):
        metrics.energy_pointing_game(MAPS, soft)
    thresholded = metrics.energy_pointing_game(MAPS, soft > 0.5).values
    inside = (MAPS * MASKS).flatten(1).sum(1) / MAPS.flatten(1).sum(1)
    np.testing.assert_allclose(thresholded, inside.numpy(), rtol=1e-6)
    assert (thresholded < 0.5).all()


def test_a_frozen_model_with_the_full_backward():
    frozen = small_model().requires_grad_(False)
    full = ucag.UCAG(GradCAM(frozen, [frozen.features[4]]), truncate_backward=False, **SMALL).explain(X, [0, 1])
    truncated = ucag.UCAG(GradCAM(frozen, [frozen.features[4]]), **SMALL).explain(X, [0, 1])
    assert not full.truncated_backward and truncated.truncated_backward
    torch.testing.assert_close(full.raw, truncated.raw, rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in frozen.parameters())


# ---- out of memory: back off, keep what was done, remember ------------------------------------


class RunsOutAbove:
    """A base (or model hook) that raises torch's out-of-memory error for chunks larger
    than ``limit`` rows, as a GPU would, and counts the chunk sizes it saw."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []

    def check(self, rows: int) -> None:
        self.sizes.append(rows)
        if rows > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected above {self.limit} rows)")

    def __call__(self, patches: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.check(len(patches))
        return patches.mean(dim=1) * (targets[:, None, None] + 1)


@pytest.mark.batch_comparison
def test_out_of_memory_halves_the_chunk_and_keeps_the_work():
    expected = ucag.UCAG(mean_map, model=MODEL, batch_size=4, units=3, scale=1.0).explain(X, [0, 1])
    base = RunsOutAbove(5)
    explainer = ucag.UCAG(base, model=MODEL, batch_size=16, units=3, scale=1.0)
    with pytest.warns(RuntimeWarning, match="out of memory with 16 patches per chunk; continuing with 8"):
        first = explainer.explain(X, [0, 1])
    reference = ucag.UCAG(RunsOutAbove(99), model=MODEL, batch_size=4, units=3, scale=1.0).explain(X, [0, 1])
    assert_close_across_batches(first.raw, reference.raw)  # the work before the back-off is kept, in order
    assert first.chunk_size == 4 and explainer.chunk_size == 4 and explainer.batch_size == 16
    assert max(base.sizes[base.sizes.index(4) :]) <= 5  # after backing off, never above the limit
    seen = len(base.sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # remembered: no second back-off
        explainer.explain(X, [0, 1])
    assert max(base.sizes[seen:]) == 4
    assert expected.raw.shape == first.raw.shape


def test_one_row_that_does_not_fit_is_an_error_not_a_loop():
    with pytest.raises(torch.cuda.OutOfMemoryError), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ucag.UCAG(RunsOutAbove(0), model=MODEL, **SMALL).explain(X, [0, 1])


def test_batch_size_auto():
    explainer = ucag.UCAG(mean_map, model=MODEL, batch_size="auto", **SMALL)
    assert explainer.chunk_size == 16  # a CPU model; 64 on a GPU
    assert explainer.explain(X, [0, 1]).chunk_size == 16


@pytest.mark.batch_comparison
def test_metrics_back_off_too():
    model = small_model()
    oom = RunsOutAbove(3)
    handle = model.register_forward_pre_hook(lambda module, args: oom.check(len(args[0])))
    try:
        with pytest.warns(RuntimeWarning, match="out of memory with 8 inputs per chunk; continuing with 4"):
            result = metrics.deletion(model, X, MAPS, [0, 1], step=128)
        density = metrics.map_density(model, X, MAPS, [0, 1], batch_size=2)
    finally:
        handle.remove()
    reference = metrics.deletion(model, X, MAPS, [0, 1], step=128, batch_size=2)
    assert_close_across_batches(result.curves, reference.curves)
    assert result.batch_size == 2 and density[0].batch_size == 2


@pytest.mark.batch_comparison
def test_evaluate_backs_off_and_remembers(tmp_path):
    from ucag.eval.datasets import SampleImages

    model = small_model()
    oom = RunsOutAbove(3)
    options = {
        "methods": ["gradcam"],
        "variants": ["base", "ucag"],
        "metrics": ["deletion"],
        "input_size": 32,
        "step": 128,
        "ucag_options": SMALL,
        "mean": (0.5,) * 3,
        "std": (0.25,) * 3,
    }
    dataset = SampleImages(("astronaut", "rocket"))  # no ImageNet label: the small model's prediction is explained
    handle = model.register_forward_pre_hook(
        lambda module, args: oom.check(len(args[0])) if len(args[0]) > 3 and not torch.is_grad_enabled() else None
    )
    try:
        with pytest.warns(RuntimeWarning, match="out of memory with 8 inputs per chunk"):
            summary = evaluate(
                model, model.features[4], dataset, tmp_path / "oom", progress=False, plot=False, **options
            )
    finally:
        handle.remove()
    reference = evaluate(
        model, model.features[4], dataset, tmp_path / "ok", progress=False, plot=False, metric_batch_size=2, **options
    )
    assert summary.images == reference.images == 2
    for got, expected in zip(summary.cells, reference.cells, strict=True):
        assert (got.method, got.variant, got.column) == (expected.method, expected.variant, expected.column)
        assert got.mean == pytest.approx(expected.mean, rel=1e-4, abs=1e-6)  # float32 rounding of other batches
    assert max(oom.sizes) == 8 and oom.sizes.count(8) == 1  # one back-off, remembered for the second photo

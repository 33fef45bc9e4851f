"""ucag — Unfold and Conquer Attribution Guidance (Hong et al., AAAI 2023).

The library (docs/algorithm.md has every definition it implements):

- [UCAG][ucag.explainer.UCAG] ([ucag.explainer][ucag.explainer]) wraps a pytorch-grad-cam,
  Captum or zennit object, one of [ucag.bases][ucag.bases]' propagation methods or a plain
  callable, and returns UCAG maps ([Explanation][ucag.explainer.Explanation]);
  [fast][ucag.bases.truncation.fast] stops a CAM's backward pass at its target layer;
- [ucag.targets][ucag.targets]: what a map explains beyond a softmax class (binary,
  multi-label, segmentation, similarity, any score) and the model's confidence in it on
  each patch;
- [ucag.models][ucag.models]: [suggest_target_layer][ucag.models.suggest_target_layer] /
  [layer_suggestion][ucag.models.layer_suggestion] (which layer a CAM should use on a CNN,
  ViT or Swin, and why) and the input size of fixed-resolution models;
  [ucag.layers][ucag.layers]: [Tap][ucag.layers.Tap] (a target layer for a map no module
  outputs once) and the check that every CAM's target layers run once and keep the batch;
- the Rust kernels: [Grid][ucag.Grid] (the patch geometry, §1;
  [GridSpec][ucag.grid.GridSpec] describes it for any image size),
  [unfold][ucag.kernels.unfold] (images -> upsampled patches),
  [confidence][ucag.kernels.confidence] (logits -> per-patch weights, §3),
  [fold][ucag.kernels.fold] (weighted partial maps -> raw maps, §4). They take torch
  tensors or numpy arrays and keep the data where it is ([ucag.kernels][ucag.kernels]);
  [show_config][ucag.runtime.show_config] says which kernels run and why;
- [ucag.baselines][ucag.baselines] (Upscale, CAMERAS), [ucag.postprocess][ucag.postprocess],
  [ucag.viz][ucag.viz] (pictures) and [ucag.data][ucag.data] (a real sample model and
  photos).

Above it, the evaluation toolkit [ucag.eval][ucag.eval]: metrics
([ucag.eval.metrics][ucag.eval.metrics]), the method registry,
[evaluate][ucag.eval.runner.evaluate] over a dataset and [tune][ucag.eval.tuning.tune].
``import ucag`` does not load it: ``ucag.eval``, ``ucag.evaluate`` and ``ucag.tune`` import
it on first use (PEP 562).
"""

from typing import TYPE_CHECKING, Any

import torch  # noqa: F401  (libtorch must be loaded before the tch module)

from . import baselines, bases, data, layers, models, postprocess, targets, viz
from ._core import Grid, __version__
from .bases.truncation import fast
from .explainer import UCAG, Explanation
from .grid import GridSpec
from .kernels import confidence, fold, unfold
from .models import layer_suggestion, suggest_target_layer
from .runtime import show_config

if TYPE_CHECKING:
    from . import eval  # noqa: F401  (typed for ucag.eval; loaded by __getattr__, not exported)
    from .eval import evaluate, tune

#: Names of the evaluation toolkit reachable from the package root, loaded on first use.
_FROM_EVAL = {"eval": None, "evaluate": "evaluate", "tune": "tune"}


def __getattr__(name: str) -> Any:
    if name in _FROM_EVAL:
        import importlib

        toolkit = importlib.import_module("ucag.eval")
        attribute = _FROM_EVAL[name]
        return toolkit if attribute is None else getattr(toolkit, attribute)
    if name == "metrics":
        raise AttributeError(
            "module 'ucag' has no attribute 'metrics': the metrics are in the evaluation toolkit, `from ucag.eval import metrics`"
        )
    raise AttributeError(f"module 'ucag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_EVAL))


# `eval` stays out: a star import must not shadow the builtin
__all__ = [
    "UCAG",
    "Explanation",
    "Grid",
    "GridSpec",
    "__version__",
    "baselines",
    "bases",
    "confidence",
    "data",
    "evaluate",
    "fast",
    "fold",
    "layer_suggestion",
    "layers",
    "models",
    "postprocess",
    "show_config",
    "suggest_target_layer",
    "targets",
    "tune",
    "unfold",
    "viz",
]

"""ucag — Unfold and Conquer Attribution Guidance (Hong et al., AAAI 2023).

The library (docs/algorithm.md has every definition it implements):

- :class:`UCAG` (:mod:`ucag.explainer`) wraps a pytorch-grad-cam, Captum or zennit object,
  one of :mod:`ucag.bases`' propagation methods or a plain callable, and returns UCAG maps
  (:class:`Explanation`); :func:`fast` stops a CAM's backward pass at its target layer;
- :mod:`ucag.targets`: what a map explains beyond a softmax class (binary, multi-label,
  segmentation, similarity, any score) and the model's confidence in it on each patch;
- :mod:`ucag.models`: :func:`suggest_target_layer` / :func:`layer_suggestion` (which layer a
  CAM should use on a CNN, ViT or Swin, and why) and the input size of fixed-resolution models;
  :mod:`ucag.layers`: :class:`~ucag.layers.Tap` (a target layer for a map no module outputs
  once) and the check that every CAM's target layers run once and keep the batch;
- the Rust kernels: :class:`Grid` (the patch geometry, §1; :class:`GridSpec` describes it
  for any image size), :func:`unfold` (images -> upsampled patches), :func:`confidence`
  (logits -> per-patch weights, §3), :func:`fold` (weighted partial maps -> raw maps,
  §4). They take torch tensors or numpy arrays and keep the data where it is
  (:mod:`ucag.kernels`); :func:`show_config` says which kernels run and why;
- :mod:`ucag.baselines` (Upscale, CAMERAS), :mod:`ucag.postprocess`, :mod:`ucag.viz`
  (pictures) and :mod:`ucag.data` (a real sample model and photos).

Above it, the evaluation toolkit :mod:`ucag.eval`: metrics (:mod:`ucag.eval.metrics`), the
method registry, :func:`evaluate` over a dataset and :func:`tune`. ``import ucag`` does not
load it: ``ucag.eval``, ``ucag.evaluate`` and ``ucag.tune`` import it on first use (PEP 562).
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

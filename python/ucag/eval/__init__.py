"""The evaluation toolkit, one layer above the library: it imports :mod:`ucag`, never
the other way round.

- :mod:`ucag.eval.metrics` — deletion, insertion, pointing game, energy pointing game,
  map density, weakly supervised segmentation (docs/algorithm.md §6);
- :mod:`ucag.eval.measures` — the metrics :func:`evaluate` computes, by registration
  (:func:`register_metric`: columns, titles, direction, needs, how to compute);
- :mod:`ucag.eval.registry` — every method a comparison can run, by name, and the
  variants (base, UCAG, Upscale, SESS, SESS-matched, RefineCAM) and controls (Random-CAM,
  Sobel);
- :mod:`ucag.eval.peers` — the controls and peers' logic: seeded Random-CAM, Sobel on the
  unnormalised image, RefineCAM's layers, SESS on UCAG's grid;
- :mod:`ucag.eval.compute` — :func:`~ucag.eval.compute.count_passes`, the forward and
  backward passes (and megapixels) a map costs;
- :mod:`ucag.eval.runner` — :func:`evaluate` over a dataset, resumable, sharded under
  torchrun, with its summary;
- :mod:`ucag.eval.datasets` — readers of local copies of ImageNet, VOC 2007, COCO 2014,
  ImageNet-segmentation and the bundled photos;
- :mod:`ucag.eval.tuning` — :func:`tune`, UCAG's settings for a model on the user's images;
- :mod:`ucag.eval.sanity` — the model-parameter randomisation sanity check (Adebayo et
  al. 2018): :func:`randomization_check`;
- :mod:`ucag.eval.plots` — deletion / insertion curves with their AUCs, and the
  randomisation check's figures.
"""

from . import compute, datasets, measures, metrics, peers, registry, sanity
from .measures import Column, MetricInput, MetricSpec, register_metric
from .plots import plot_curves, plot_randomization, plot_randomization_curves
from .registry import METHODS, explain_with, register_method
from .runner import evaluate, summarize
from .sanity import randomization_check, registry_explainer
from .tuning import tune

__all__ = [
    "METHODS",
    "Column",
    "MetricInput",
    "MetricSpec",
    "measures",
    "register_metric",
    "compute",
    "datasets",
    "evaluate",
    "explain_with",
    "metrics",
    "peers",
    "plot_curves",
    "plot_randomization",
    "plot_randomization_curves",
    "randomization_check",
    "register_method",
    "registry",
    "registry_explainer",
    "sanity",
    "summarize",
    "tune",
]

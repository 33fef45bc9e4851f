"""The evaluation toolkit, one layer above the library: it imports [ucag][ucag], never the other way round.

- [ucag.eval.metrics][ucag.eval.metrics] — deletion, insertion, pointing game, energy
  pointing game, map density, weakly supervised segmentation (docs/algorithm.md §6);
- [ucag.eval.measures][ucag.eval.measures] — the metrics [evaluate][ucag.eval.runner.evaluate]
  computes, by registration ([register_metric][ucag.eval.measures.register_metric]: columns,
  titles, direction, needs, how to compute);
- [ucag.eval.registry][ucag.eval.registry] — every method a comparison can run, by name,
  and the variants (base, UCAG, Upscale, SESS, SESS-matched, RefineCAM) and controls
  (Random-CAM, Sobel);
- [ucag.eval.peers][ucag.eval.peers] — the controls and peers' logic: seeded Random-CAM,
  Sobel on the unnormalised image, RefineCAM's layers, SESS on UCAG's grid;
- [ucag.eval.compute][ucag.eval.compute] — [count_passes][ucag.eval.compute.count_passes],
  the forward and backward passes (and megapixels) a map costs;
- [ucag.eval.runner][ucag.eval.runner] — [evaluate][ucag.eval.runner.evaluate] over a
  dataset, resumable, sharded under torchrun, with its summary;
- [ucag.eval.datasets][ucag.eval.datasets] — readers of local copies of ImageNet, VOC 2007,
  COCO 2014, ImageNet-segmentation and the bundled photos;
- [ucag.eval.tuning][ucag.eval.tuning] — [tune][ucag.eval.tuning.tune], UCAG's settings
  for a model on the user's images;
- [ucag.eval.sanity][ucag.eval.sanity] — the model-parameter randomisation sanity check
  (Adebayo et al. 2018): [randomization_check][ucag.eval.sanity.randomization_check];
- [ucag.eval.plots][ucag.eval.plots] — deletion / insertion curves with their AUCs, and the
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

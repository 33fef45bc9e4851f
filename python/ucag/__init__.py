"""ucag — Unfold and Conquer Attribution Guidance (Hong et al., AAAI 2023).

This package owns the public API. The kernels are Rust:

- :class:`Grid` — the patch geometry (SPEC section 1),
- :func:`unfold` — images -> bicubically upsampled patches,
- :func:`confidence` — logits -> per-patch confidence weights (section 3),
- :func:`fold` — weighted partial maps -> full-resolution raw UCAG maps (section 4).

Each kernel takes torch tensors or numpy arrays and keeps the data where it is: the
portable core ``ucag._core`` (ndarray + rayon, GIL released) runs on numpy arrays and on
zero-copy views of CPU tensors; the libtorch module ``ucag._tch`` runs on tensors on their
device when it was built for the installed torch; otherwise torch operations do
(:mod:`ucag.kernels`). :func:`show_config` says which runs and why.

:class:`UCAG` (``ucag.explainer``) wraps a pytorch-grad-cam, Captum or zennit object, or a
plain callable, and returns UCAG maps; :mod:`ucag.baselines` has the paper's comparison
baselines; :mod:`ucag.metrics` the evaluation metrics and :func:`evaluate`
(``ucag.evaluation``) runs them over a dataset (:mod:`ucag.datasets`); :mod:`ucag.viz`
draws maps; :func:`tune` (``ucag.tuning``) picks settings for a model on the user's images;
:mod:`ucag.data` has a real sample model and photos.
"""

import torch  # noqa: F401  (libtorch must be loaded before the tch module)

from . import baselines, metrics
from ._core import Grid, __version__
from .kernels import confidence, fold, unfold
from .runtime import show_config
from .evaluation import evaluate
from .explainer import UCAG, Explanation
from .truncation import fast
from .tuning import tune

__all__ = ["UCAG", "Explanation", "Grid", "__version__", "baselines", "confidence", "evaluate", "fast", "fold", "metrics", "show_config", "tune", "unfold"]

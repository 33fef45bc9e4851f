"""ucag — Unfold and Conquer Attribution Guidance (Hong et al., AAAI 2023).

This package owns the public API. The kernels live in the Rust extension ``ucag._core``:

- :class:`Grid` — the patch geometry (SPEC section 1),
- :func:`unfold` — images -> bicubically upsampled patches,
- :func:`confidence` — logits -> per-patch confidence weights (section 3),
- :func:`fold` — weighted partial maps -> full-resolution raw UCAG maps (section 4).

Each kernel takes torch tensors (computed by libtorch on the tensor's own device) or
numpy arrays (computed by an ndarray + rayon kernel with the GIL released).

:class:`UCAG` (``ucag.explainer``) wraps a pytorch-grad-cam, Captum or zennit object, or a
plain callable, and returns UCAG maps; :mod:`ucag.baselines` has the paper's comparison
baselines; :mod:`ucag.metrics` the evaluation metrics and :func:`evaluate`
(``ucag.evaluation``) runs them over a dataset (:mod:`ucag.datasets`); :mod:`ucag.viz`
draws maps; :func:`tune` (``ucag.tuning``) picks settings for a model on the user's images;
:mod:`ucag.data` has a real sample model and photos.
"""

import torch  # noqa: F401  (libtorch must be loaded before the extension module)

from . import baselines, metrics
from ._core import Grid, __version__, confidence, fold, unfold
from .evaluation import evaluate
from .explainer import UCAG, Explanation
from .truncation import fast
from .tuning import tune

__all__ = ["UCAG", "Explanation", "Grid", "__version__", "baselines", "confidence", "evaluate", "fast", "fold", "metrics", "tune", "unfold"]

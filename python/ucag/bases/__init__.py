"""Base attribution methods and how UCAG runs them on patches.

- :mod:`ucag.bases.adapters` — the :class:`Adapter` contract and the adapters for
  pytorch-grad-cam, Captum, zennit and plain callables (:func:`make_adapter`);
- :mod:`ucag.bases.truncation` — stopping the backward pass at the target layer
  (:func:`ucag.fast`);
- :mod:`ucag.bases.propagation` — LRP, c*LRP, SGLRP and FullGrad's raw map as bases.
"""

from .adapters import Adapter, BaseAdapter, MapKind, PatchAttribution, make_adapter
from .propagation import LRP, ContrastiveLRP, FullGrad, SoftmaxGradientLRP
from .truncation import fast

__all__ = [
    "LRP",
    "Adapter",
    "BaseAdapter",
    "ContrastiveLRP",
    "FullGrad",
    "MapKind",
    "PatchAttribution",
    "SoftmaxGradientLRP",
    "fast",
    "make_adapter",
]

"""Base attribution methods and how UCAG runs them on patches.

- [ucag.bases.adapters][ucag.bases.adapters] — the [Adapter][ucag.bases.adapters.Adapter]
  contract and the adapters for pytorch-grad-cam, Captum, zennit and plain callables
  ([make_adapter][ucag.bases.adapters.make_adapter]);
- [ucag.bases.truncation][ucag.bases.truncation] — stopping the backward pass at the target
  layer ([ucag.fast][ucag.bases.truncation.fast]);
- [ucag.bases.propagation][ucag.bases.propagation] — LRP, ``c*LRP``, SGLRP and FullGrad's raw
  map as bases.
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

"""Type stubs for the libtorch extension ``ucag._tch`` (see tch/src/lib.rs); loaded only by
``ucag.runtime``, next to the torch it was built for."""

from typing import Literal, Sequence

import torch

__version__: str

# (image_size, units, patch_size, scale, scaled_size), as ucag.Grid.__getnewargs__() gives
_Geometry = tuple[tuple[int, int], int, tuple[int, int], float, tuple[int, int]]

def unfold(images: torch.Tensor, geometry: _Geometry) -> torch.Tensor: ...
def confidence(logits: torch.Tensor, targets: torch.Tensor | Sequence[int], mode: Literal["exp", "prob", "uniform"] = "exp") -> torch.Tensor: ...
def fold(maps: torch.Tensor, weights: torch.Tensor, geometry: _Geometry) -> torch.Tensor: ...

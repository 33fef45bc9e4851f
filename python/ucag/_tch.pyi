"""Type stubs for the libtorch extension ``ucag._tch`` (see tch/src/python.rs); loaded only
by ``ucag.runtime``, next to the torch it was built for.

Errors as in ``ucag._core``: ValueError/TypeError naming the argument, MemoryError naming
it for a result too large for the machine (checked before allocating on the CPU) or an
allocation libtorch refuses (CUDA out of memory), RuntimeError for a bug; never a
BaseException."""

from typing import Literal, overload

import torch

__all__ = ["unfold", "fold", "confidence", "__version__"]

__version__: str

# (image_size, units, patch_size, scale, scaled_size), as ucag.Grid.__getnewargs__() gives
_Geometry = tuple[tuple[int, int], int, tuple[int, int], float, tuple[int, int]]
_Weighting = Literal["exp", "prob", "uniform"]

def unfold(images: torch.Tensor, geometry: _Geometry) -> torch.Tensor:
    """Bicubic unfold of a (B, C, H, W) floating tensor into (B*N, C, S_h, S_w) patches
    (docs/algorithm.md section 1)."""

@overload
def confidence(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mode: _Weighting = "exp",
    *,
    return_probabilities: Literal[False] = False,
) -> torch.Tensor:
    """Per-row confidence weights (docs/algorithm.md section 3) from (rows, K) logits and
    an integer tensor of targets on the logits' device; (probabilities, weights) from the
    same softmax when ``return_probabilities`` is true."""

@overload
def confidence(
    logits: torch.Tensor, targets: torch.Tensor, mode: _Weighting = "exp", *, return_probabilities: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def confidence(
    logits: torch.Tensor, targets: torch.Tensor, mode: _Weighting = "exp", *, return_probabilities: bool
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...
def fold(
    maps: torch.Tensor, weights: torch.Tensor, geometry: _Geometry, window: Literal["box", "linear", "cosine"] = "box"
) -> torch.Tensor:
    """Fold (B*N, [1,] h', w') partial maps with (B*N,) weights into raw (B, H, W) UCAG
    maps (docs/algorithm.md section 4), with the fold ``window`` "box" (the paper's),
    "linear" or "cosine" (section 4.1)."""

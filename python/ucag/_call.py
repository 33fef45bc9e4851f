"""pytorch-grad-cam's call convention, shared by :class:`ucag.UCAG`, the baselines
(:mod:`ucag.baselines`) and the propagation bases (:mod:`ucag.bases.propagation`): an object
called as ``obj(input_tensor=x, targets=[...])`` returns numpy float32 (B, H, W) maps.
"""

from __future__ import annotations

import numpy as np
import torch

from ._inputs import Targets


class GradCamCallable:
    """pytorch-grad-cam's call convention: ``obj(input_tensor=x, targets=[...])`` returns
    numpy float32 (B, H, W) maps. A class provides :meth:`_call_maps`, the torch maps a
    call returns."""

    def _call_maps(
        self, input_tensor: torch.Tensor, targets: Targets, *, aug_smooth: bool, eigen_smooth: bool
    ) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Targets = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Numpy float32 (B, H, W) maps of ``input_tensor`` for ``targets``."""
        maps = self._call_maps(input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        return maps.detach().float().cpu().numpy()

"""Real photos that ship with installed packages, for demos and tests (never downloaded).

Needs the ``examples`` extra (scikit-image).
"""

from __future__ import annotations

import numpy as np
import torch

#: scikit-image's bundled colour photos usable as classifier inputs.
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def load_photo(name: str = "chelsea") -> torch.Tensor:
    """A bundled scikit-image photo as a float32 (3, H, W) tensor in [0, 1]."""
    if name not in SKIMAGE_PHOTOS:
        raise ValueError(f"name: expected one of {SKIMAGE_PHOTOS}, got {name!r}")
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("ucag.data needs scikit-image: pip install 'ucag[examples]'") from err
    rgb = np.ascontiguousarray(getattr(data, name)()[..., :3])
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)

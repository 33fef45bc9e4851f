"""The ``ucag`` command line.

``ucag demo`` runs the kernels on a bundled real photo: unfold it into the default 6 x 6
grid of upsampled patches, fold the patches back with weight 1, print the reconstruction
error, and save a picture of the patch grid next to the reconstruction.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import ucag
from ucag.data import SKIMAGE_PHOTOS, load_photo


def _to_uint8(chw: torch.Tensor) -> np.ndarray:
    return (chw.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def patch_grid_picture(patches: torch.Tensor, grid: ucag.Grid, tile_width: int = 120, gap: int = 4) -> np.ndarray:
    """Tile the N scaled patches (N, 3, S_h, S_w) as the units x units grid they come from."""
    from PIL import Image

    sh, sw = grid.scaled_size
    tile_height = max(1, round(tile_width * sh / sw))
    n = grid.units
    canvas = np.full((n * (tile_height + gap) - gap, n * (tile_width + gap) - gap, 3), 255, np.uint8)
    for p in range(grid.num_patches):
        i, j = divmod(p, n)
        tile = Image.fromarray(_to_uint8(patches[p])).resize((tile_width, tile_height), Image.BICUBIC)
        y, x = i * (tile_height + gap), j * (tile_width + gap)
        canvas[y : y + tile_height, x : x + tile_width] = np.asarray(tile)
    return canvas


def demo(args: argparse.Namespace) -> int:
    from PIL import Image

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.photos:
        photo = load_photo(name)[None]  # (1, 3, H, W)
        grid = ucag.Grid(photo.shape[-2:], units=args.units, scale=args.scale)
        start = time.perf_counter()
        patches = ucag.unfold(photo, grid)
        ones = torch.ones(grid.num_patches)
        # fold takes one map per patch: fold each colour channel as its own map
        recon = torch.stack([ucag.fold(patches[:, c], ones, grid)[0] for c in range(photo.shape[1])])
        elapsed = time.perf_counter() - start
        err = (recon - photo[0]).abs()
        print(
            f"{name}: {tuple(photo.shape[-2:])} -> {grid.num_patches} patches of {grid.patch_size} "
            f"upsampled to {grid.scaled_size}; fold(unfold) mean |error| {err.mean():.5f}, "
            f"max {err.max():.4f} ({elapsed * 1000:.0f} ms)"
        )
        mosaic = patch_grid_picture(patches, grid)
        side = np.concatenate([_to_uint8(photo[0]), _to_uint8(recon)], axis=1)
        path_grid = out_dir / f"{name}_patches.png"
        path_side = out_dir / f"{name}_reconstruction.png"
        Image.fromarray(mosaic).save(path_grid)
        Image.fromarray(side).save(path_side)
        print(f"  wrote {path_grid} and {path_side}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ucag", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="unfold and fold bundled photos; save pictures of the patch grid")
    p.add_argument("--photos", nargs="+", default=["chelsea", "coffee"], choices=SKIMAGE_PHOTOS)
    p.add_argument("--units", type=int, default=6, help="patches per axis (default 6)")
    p.add_argument("--scale", type=float, default=2.6, help="patch upsampling factor (default 2.6)")
    p.add_argument("--out", default="out", help="folder for the PNGs (default ./out)")
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

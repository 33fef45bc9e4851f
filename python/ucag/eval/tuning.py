"""Choosing UCAG's settings for a model on the user's own images: [tune][ucag.eval.tuning.tune].

The best grid differs between models (the paper's own ablation shows it). [tune][ucag.eval.tuning.tune]
explains the user's images with every setting of a small search space, measures each with
deletion and insertion (docs/algorithm.md §6.1, the procedure in §9.5), marks the Pareto front of (deletion down,
insertion up) and recommends the setting with the best score, as a ready-to-paste call.
Settings that share a grid (units, patch size, scale) share one pass of the base method
over the patches, and the full-image maps are computed once, so a sweep costs about its
number of distinct grids.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from torch import nn

from .._core import Grid
from .._inputs import Targets, check_input, resolve_targets
from .._model_state import eval_mode, model_device
from ..display import shown_once
from ..explainer import UCAG
from ..grid import GridSpec
from ..options import (
    DEFAULT_CHANNELS_LAST,
    DEFAULT_PRECISION,
    DEFAULT_SCALE,
    DEFAULT_UNITS,
    ChannelsLast,
    GlobalView,
    Precision,
    Weighting,
)
from . import metrics as M

Objective: TypeAlias = Literal["insertion-deletion", "insertion", "deletion"]

#: The default search space: 3 x 2 grids, each conquered 4 ways (24 settings).
DEFAULT_SPACE: dict[str, tuple[Any, ...]] = {
    "units": (4, 6, 8),
    "patch_fraction": (124 / 224, 0.65),
    "scale": (DEFAULT_SCALE,),
    "weighting": ("exp", "uniform"),
    "global_view": (None, "product"),
}


@dataclass(frozen=True)
class Setting:
    """One UCAG configuration.

    Attributes:
        units: the grid's patches per side.
        patch_fraction: the patch side over the image side (the paper's default 124/224).
        scale: the factor the patches are upsampled by.
        weighting: how the patches' maps are weighted by their confidence (``"exp"``,
            ``"prob"``, ``"uniform"``).
        global_view: how the full-image map is fused with UCAG's (``"product"``, ``"mean"``);
            None: not at all, the paper's method.
        scaled_size: the one input size of a fixed-resolution model, which replaces
            ``scale`` (set by [tune][ucag.eval.tuning.tune]).

    Examples:
        >>> setting = Setting(units=6)
        >>> setting.label()
        'n=6 p=0.55 s=2.6 exp'
        >>> setting.call((224, 224))
        "ucag.UCAG(cam, units=6, patch_size=(124, 124), scale=2.6, weighting='exp')"
    """

    units: int = DEFAULT_UNITS
    patch_fraction: float = 124 / 224
    scale: float = DEFAULT_SCALE
    weighting: Weighting = "exp"
    global_view: GlobalView | None = None
    #: the one input size of a fixed-resolution model, which replaces ``scale`` (set by ``tune``)
    scaled_size: tuple[int, int] | None = None

    @property
    def grid_spec(self) -> GridSpec:
        """The setting's grid, for any image size."""
        return GridSpec(self.units, self.patch_fraction, self.scale, self.scaled_size)

    def size_kwargs(self) -> dict[str, Any]:
        """How [UCAG][ucag.explainer.UCAG] is told the patches' size.

        Returns:
            ``{"scale": scale}``, or nothing for a fixed-resolution model (UCAG then resizes
                the patches to the model's size).
        """
        return {} if self.scaled_size else {"scale": self.scale}

    def grid(self, size: tuple[int, int]) -> Grid:
        """The grid this setting cuts images of one size into.

        Args:
            size: the images' (H, W).

        Returns:
            The grid.

        Examples:
            >>> Setting(units=6).grid((224, 224))
            Grid(image_size=(224, 224), units=6, patch_size=(124, 124), scaled_size=(322, 322), num_patches=36)
        """
        return self.grid_spec.grid(size)

    def ucag_kwargs(self, size: tuple[int, int]) -> dict[str, Any]:
        """The setting as keyword arguments of [UCAG][ucag.explainer.UCAG].

        Args:
            size: the images' (H, W), which turns ``patch_fraction`` into pixels.

        Returns:
            ``units``, ``patch_size`` (pixels), ``scale`` (unless fixed-resolution),
                ``weighting`` and ``global_view`` (when set).

        Examples:
            >>> Setting(units=6, global_view="product").ucag_kwargs((224, 224))
            {'units': 6, 'patch_size': (124, 124), 'scale': 2.6, 'weighting': 'exp', 'global_view': 'product'}
        """
        patch = self.grid(size).patch_size
        kwargs: dict[str, Any] = {
            "units": self.units,
            "patch_size": patch,
            **self.size_kwargs(),
            "weighting": self.weighting,
        }
        if self.global_view is not None:
            kwargs["global_view"] = self.global_view
        return kwargs

    def call(self, size: tuple[int, int], base: str = "cam") -> str:
        """The setting as Python code, e.g. ``ucag.UCAG(cam, units=6, ...)``.

        Args:
            size: the images' (H, W), which turns ``patch_fraction`` into pixels.
            base: the base method's name in the code.

        Returns:
            The call.
        """
        args = ", ".join(f"{k}={v!r}" for k, v in self.ucag_kwargs(size).items())
        return f"ucag.UCAG({base}, {args})"

    def label(self) -> str:
        """A short label for tables and figures, e.g. ``n=6 p=0.55 s=2.6 exp +product``.

        Returns:
            The label.
        """
        size = f"{self.scaled_size[0]}x{self.scaled_size[1]}px" if self.scaled_size else f"s={self.scale:g}"
        text = f"n={self.units} p={self.patch_fraction:.2f} {size} {self.weighting}"
        return text + (f" +{self.global_view}" if self.global_view else "")


@dataclass
class TuneRow:
    """One setting's scores: per image and their means.

    Attributes:
        setting: the setting.
        deletion: (B,) deletion AUCs, one per image.
        insertion: (B,) insertion AUCs, one per image.
        score: the objective's score (higher is better).
        pareto: whether the setting is on the Pareto front of (deletion down, insertion up).
    """

    setting: Setting
    deletion: np.ndarray
    insertion: np.ndarray
    score: float
    pareto: bool = False

    @property
    def mean_deletion(self) -> float:
        """The mean deletion AUC over the images."""
        return float(self.deletion.mean())

    @property
    def mean_insertion(self) -> float:
        """The mean insertion AUC over the images."""
        return float(self.insertion.mean())


@dataclass
class TuneResult:
    """What [tune][ucag.eval.tuning.tune] found.

    Attributes:
        rows: every setting's scores, in search order.
        best: the recommended setting (highest ``objective`` score).
        objective: the objective the settings were scored by.
        size: the image size (H, W) it was tuned on.
        images: how many images it was tuned on.
    """

    rows: list[TuneRow]
    best: Setting
    objective: str
    size: tuple[int, int]
    images: int = 0

    @property
    def call(self) -> str:
        """The recommended setting as a ready-to-paste call."""
        return self.best.call(self.size)

    def row(self, setting: Setting) -> TuneRow:
        """The scores of one setting.

        Args:
            setting: one of the settings of ``rows``.

        Returns:
            Its row.
        """
        return next(r for r in self.rows if r.setting == setting)

    def markdown(self) -> str:
        """The result as a Markdown table.

        Returns:
            The table, best score first (* marks the Pareto front), then the number of
                images and the recommended call.
        """
        lines = [
            f"| setting | deletion ↓ | insertion ↑ | {self.objective} score ↑ | Pareto |",
            "|---|---|---|---|---|",
        ]
        for r in sorted(self.rows, key=lambda r: -r.score):
            lines.append(
                f"| {r.setting.label()} | {r.mean_deletion:.4f} | {r.mean_insertion:.4f} | {r.score:.4f} | {'*' if r.pareto else ''} |"
            )
        return "\n".join(lines) + f"\n\n{self.images} images. Recommended: `{self.call}`\n"

    def plot(self, ax: Any = None) -> Any:
        """Deletion (x) against insertion (y) per setting, the Pareto front joined and the recommended setting circled.

        Args:
            ax: a matplotlib Axes to draw into; default a new figure.

        Returns:
            The matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.8)) if ax is None else (ax.figure, ax)
        d = np.array([r.mean_deletion for r in self.rows])
        i = np.array([r.mean_insertion for r in self.rows])
        front = np.array([r.pareto for r in self.rows])
        ax.scatter(d[~front], i[~front], color="0.6", label="setting")
        order = np.argsort(d[front])
        ax.plot(d[front][order], i[front][order], "o-", color="C3", label="Pareto front")
        best = self.row(self.best)
        ax.scatter(
            [best.mean_deletion], [best.mean_insertion], s=220, facecolors="none", edgecolors="k", label="recommended"
        )
        for r in self.rows:
            if r.pareto:
                ax.annotate(
                    r.setting.label(),
                    (r.mean_deletion, r.mean_insertion),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
        ax.set_xlabel("deletion AUC (lower is better)")
        ax.set_ylabel("insertion AUC (higher is better)")
        ax.set_title(f"UCAG settings on {self.images} images")
        ax.legend(loc="best", fontsize=8)
        return shown_once(fig)


def _settings(space: Mapping[str, Sequence[Any]] | Sequence[Setting] | None) -> list[Setting]:
    if space is None:
        space = DEFAULT_SPACE
    if isinstance(space, Mapping):
        unknown = set(space) - set(DEFAULT_SPACE)
        if unknown:
            raise ValueError(f"space: unknown keys {sorted(unknown)}; expected some of {', '.join(DEFAULT_SPACE)}")
        axes = {k: tuple(space.get(k, (getattr(Setting(), k),))) for k in DEFAULT_SPACE}
        if any(len(v) == 0 for v in axes.values()):
            raise ValueError("space: every key needs at least one value")
        settings = [Setting(*values) for values in itertools.product(*axes.values())]
    else:
        settings = list(space)
        if not settings or not all(isinstance(s, Setting) for s in settings):
            raise ValueError("space: expected a dict of value lists or a non-empty list of ucag.eval.tuning.Setting")
    return list(dict.fromkeys(settings))


def _pareto(deletion: np.ndarray, insertion: np.ndarray) -> np.ndarray:
    """True where no other setting is at least as good on both and better on one."""
    front = np.ones(len(deletion), dtype=bool)
    for k in range(len(deletion)):
        dominated = (
            (deletion <= deletion[k])
            & (insertion >= insertion[k])
            & ((deletion < deletion[k]) | (insertion > insertion[k]))
        )
        front[k] = not dominated.any()
    return front


def tune(
    model: nn.Module | None,
    base: Any,
    images: torch.Tensor,
    targets: Targets = None,
    *,
    space: Mapping[str, Sequence[Any]] | Sequence[Setting] | None = None,
    objective: Objective = "insertion-deletion",
    step: int | None = None,
    metric_batch_size: int = 8,
    batch_size: int = 16,
    blur: tuple[int, float] | None = (5, 3.0),
    progress: bool = True,
    precision: Precision = DEFAULT_PRECISION,
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
) -> TuneResult:
    """Find good UCAG settings for a model and a base method on the user's images.

    Every setting of ``space`` explains the images and is scored with deletion and
    insertion (docs/algorithm.md §6.1); settings that share a grid share one pass of the
    base method over the patches. For a fixed-resolution model (ViT, Swin, ...) the patches
    are resized to its input size, so ``scale`` cannot vary.

    Args:
        model: the classifier; None: the one ``base`` holds (as [UCAG][ucag.explainer.UCAG]
            finds it).
        base: the base method, anything [UCAG][ucag.explainer.UCAG] takes.
        images: the images (B, C, H, W), normalised as the model expects.
        targets: what to explain; None: the predictions.
        space: a dict of value lists over ``units``, ``patch_fraction``, ``scale``,
            ``weighting`` and ``global_view`` (missing keys keep the paper's default; see
            ``DEFAULT_SPACE``), or a list of [Setting][ucag.eval.tuning.Setting]; default
            ``DEFAULT_SPACE``.
        objective: the score of a setting: "insertion-deletion" (mean insertion minus mean
            deletion AUC), "insertion", or "deletion" (its negative, so higher is always
            better); ties keep the first setting.
        step: the metrics' step (see [deletion][ucag.eval.metrics.deletion]).
        metric_batch_size: the metrics' batch size.
        batch_size: [UCAG][ucag.explainer.UCAG]'s batch size.
        blur: [UCAG][ucag.explainer.UCAG]'s blur, ``(kernel size, sigma)`` or None.
        progress: show a progress bar over the settings.
        precision: the arithmetic of UCAG's patch passes and of the metrics' forwards
            (docs/algorithm.md §10): ``"fp32"``, ``"bf16"`` or ``"fp16"`` (not on the CPU).
        channels_last: the layout of those passes' inputs: True, False or ``"auto"``.

    Returns:
        Every setting's scores and the recommended one.

    Raises:
        TypeError: ``images`` is not a floating-point tensor.
        ValueError: an unknown ``objective``; a ``space`` with unknown keys or an empty value
            list, or a list that is empty or holds other things than Settings; several scales
            for a fixed-resolution model; ``images`` that are not a non-empty (B, C, H, W) batch.
    """
    if objective not in ("insertion-deletion", "insertion", "deletion"):
        raise ValueError(f"objective: expected 'insertion-deletion', 'insertion' or 'deletion', got {objective!r}")
    check_input(images)
    settings = _settings(space)
    probe = UCAG(base, model=model, batch_size=batch_size, blur=blur, precision=precision, channels_last=channels_last)
    model = probe.model
    fixed = probe.model_input_size
    if fixed is not None:
        scales = sorted({s.scale for s in settings})
        if len(scales) > 1:
            raise ValueError(
                f"space: {type(model).__name__} takes only {fixed[0]}x{fixed[1]} inputs, so its patches are resized to that size and scale cannot vary; got scales {scales}"
            )
        settings = [dataclasses.replace(s, scaled_size=fixed) for s in settings]
    x = images.detach().to(model_device(model))
    size = (int(x.shape[-2]), int(x.shape[-1]))
    grids: dict[Grid, list[Setting]] = {}
    for s in settings:
        grids.setdefault(s.grid(size), []).append(s)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(settings), desc=f"tune ({len(grids)} grids)", unit="setting")
    scores: dict[Setting, tuple[np.ndarray, np.ndarray]] = {}
    with eval_mode(model):
        target_ids = resolve_targets(model, x, targets)
        global_map = probe.attribute_global(x, target_ids, targets) if any(s.global_view for s in settings) else None
        for grid, group in grids.items():
            explainer = UCAG(
                base,
                model=model,
                units=grid.units,
                patch_size=grid.patch_size,
                **group[0].size_kwargs(),
                batch_size=batch_size,
                blur=blur,
                precision=precision,
                channels_last=channels_last,
            )
            patches = explainer.attribute_patches(x, grid, target_ids, targets)
            for s in group:
                saliency = explainer.conquer(
                    patches, grid, target_ids, global_map, weighting=s.weighting, global_view=s.global_view
                ).saliency
                deletion, insertion = (
                    metric(
                        model,
                        x,
                        saliency,
                        target_ids,
                        step=step,
                        batch_size=metric_batch_size,
                        precision=precision,
                        channels_last=channels_last,
                    ).values
                    for metric in (M.deletion, M.insertion)
                )
                scores[s] = (deletion, insertion)
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    rows = []
    for s in settings:
        deletion, insertion = scores[s]
        score = {
            "insertion-deletion": insertion.mean() - deletion.mean(),
            "insertion": insertion.mean(),
            "deletion": -deletion.mean(),
        }[objective]
        rows.append(TuneRow(s, deletion, insertion, float(score)))
    front = _pareto(np.array([r.mean_deletion for r in rows]), np.array([r.mean_insertion for r in rows]))
    for r, on_front in zip(rows, front, strict=True):
        r.pareto = bool(on_front)
    best = max(rows, key=lambda r: r.score).setting  # max keeps the first of equal scores
    return TuneResult(rows, best, objective, size, images=len(x))


__all__ = ["DEFAULT_SPACE", "Setting", "TuneResult", "TuneRow", "tune"]

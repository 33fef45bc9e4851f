"""Evaluation over a dataset: [evaluate][ucag.eval.runner.evaluate] (and the ``ucag evaluate`` command).

For every sample of a dataset (a reader from [ucag.eval.datasets][ucag.eval.datasets]),
every method is explained in every variant (base, UCAG, baselines;
[ucag.eval.registry][ucag.eval.registry]), measured with the chosen metrics
([ucag.eval.metrics][ucag.eval.metrics], docs/algorithm.md §6), and appended to the output
folder as soon as the sample is done:

- ``results.csv``: one row per (image, method, variant) with every metric's value,
  what computing the map cost: the model's forward and backward passes (in samples) and
  the megapixels it forwarded ([ucag.eval.compute][ucag.eval.compute]), and the
  arithmetic it ran in (``precision``, ``channels_last``; docs/algorithm.md §10),
- ``curves.csv``: the deletion and insertion probability curves of those rows,
- ``config.json``: what the run computes (a rerun must match it).

At the end [summarize][ucag.eval.runner.summarize] writes ``summary.json`` and ``summary.md`` (mean and 95%
confidence interval per method and metric, the controls marked as floors, the mean passes
per image, and the paired UCAG - base differences) and ``curves.png`` (mean deletion and
insertion curves). A rerun on the same folder resumes
after the last complete sample; nothing computed is lost or computed twice.

The photos are read, decoded and preprocessed in a ``torch.utils.data.DataLoader`` with
``workers`` processes, ahead of the sample being explained (pinned memory and non-blocking
copies on CUDA); UCAG's batch size after an out-of-memory back-off holds for the rest of the
run, as the metrics' does.

Under ``torch.distributed`` (``torchrun``; gloo on CPU, NCCL on GPU) the samples are dealt
round-robin to the processes, and rank 0 writes every row in dataset order, so the files
equal a single process's.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .._inputs import logits_of
from .._model_state import eval_mode, model_device
from ..checks import positive_int
from ..data import preprocess_image, resize_mask
from ..display import table_html
from ..explainer import UCAG
from ..models import model_normalization, suggest_target_layer
from ..options import DEFAULT_CHANNELS_LAST, DEFAULT_PRECISION, ChannelsLast, Precision
from ..postprocess import check_blur
from ..precision import compute_plan
from ..targets import BinaryTarget, MultiLabelTarget, Target, model_output
from .compute import count_passes
from .measures import MEASURES, MetricInput, columns_of, default_metrics, metric_names
from .measures import column as registered_column
from .registry import (
    METHODS,
    check_baseline_options,
    check_target_support,
    comparison_pairs,
    display_name,
    explain_with,
)
from .sanity import RANDOMIZATION_SEED

KEY_COLUMNS = ("id", "class_name", "target", "probability", "method", "variant")
#: How ``evaluate`` reads a model's outputs (``target_kind``; docs/algorithm.md §3.1).
TargetKind = Literal["class", "binary", "multilabel"]
TARGET_KINDS: tuple[TargetKind, ...] = ("class", "binary", "multilabel")
#: What computing each map cost (docs/algorithm.md §6.9): the model's
#: forward and backward passes in samples, and the input megapixels forwarded.
PASS_COLUMNS = ("forward_passes", "backward_passes", "forward_mpx")
PASS_TITLES = {"forward_passes": "forward passes", "backward_passes": "backward passes", "forward_mpx": "Mpx forwarded"}
#: The arithmetic the row's map and metrics ran in (docs/algorithm.md §10): the precision,
#: and whether the model's inputs were channels-last.
COMPUTE_COLUMNS = ("precision", "channels_last")

RESULTS, CURVES, CONFIG = "results.csv", "curves.csv", "config.json"
SUMMARY_JSON, SUMMARY_MD, CURVES_PNG = "summary.json", "summary.md", "curves.png"


@dataclass
class Cell:
    """One method x variant x column of the summary.

    Attributes:
        method: The method's short name.
        variant: The variant's short name.
        column: The results.csv column (a metric's, or a pass count's).
        mean: The mean of the values (NaN without values).
        ci95: The 95% confidence interval's half-width (Student t); None for fewer than 2 values.
        n: The number of values. The pointing game's values are per-class accuracies (the
            dataset protocol), so its n counts classes.
    """

    method: str
    variant: str
    column: str
    mean: float
    ci95: float | None
    n: int


@dataclass
class EvaluationSummary:
    """What [summarize][ucag.eval.runner.summarize] computed.

    Attributes:
        out: The evaluation folder.
        images: The number of images.
        columns: The metric columns of results.csv.
        cells: One [Cell][ucag.eval.runner.Cell] per method/variant/column.
        differences: The paired UCAG - base cells (over the same images).
        passes: The mean forward/backward passes and Mpx forwarded per image, per method/variant.
        floors: The (method, variant) rows that are controls (floors: Random-CAM, Sobel).
    """

    out: Path
    images: int
    columns: list[str]
    cells: list[Cell]
    differences: list[Cell] = field(default_factory=list)
    passes: list[Cell] = field(default_factory=list)
    floors: list[tuple[str, str]] = field(default_factory=list)

    def cell(self, method: str, variant: str, column: str) -> Cell | None:
        """The cell of one method, variant and column, among the metrics' and the passes'.

        Args:
            method: The method's short name (``"gradcam"``).
            variant: The variant's short name (``"ucag"``).
            column: A metric column (``"deletion"``) or a pass column (``"forward_passes"``).

        Returns:
            The cell, or None when the summary has none.
        """
        return next(
            (c for c in [*self.cells, *self.passes] if (c.method, c.variant, c.column) == (method, variant, column)),
            None,
        )

    def _sections(self) -> list[str | _Table]:
        """The summary's prose and tables in order, for markdown() and the notebook view."""
        floors = set(self.floors)
        parts: list[str | _Table] = [_summary_table(_floors_last(self.cells, floors), self.columns, "method", floors)]
        text = f"\n\nMean ± 95% confidence interval (Student t) over {self.images} images"
        if "pointing_game" in self.columns:
            text += "; pointing game: mean over classes of the per-class accuracy"
        text += "; (n=...) where fewer values exist. ↓ lower is better, ↑ higher is better.\n"
        if floors:
            text += (
                "\n*floor* rows are controls: Random-CAM (random channel weights at the target layer) and Sobel (the image's edges, no model). "
                "A method is only informative on a metric where it beats them; a metric on which a floor scores as well as the methods does not measure them.\n"
            )
        parts.append(text)
        if self.passes:
            parts.append(
                "\nCost per image (mean) while the map is computed, not the metrics; passes counted in samples (a batch of 36 patches is 36):\n\n"
            )
            passes = _summary_table(
                _floors_last(self.passes, floors), list(PASS_COLUMNS), "method", floors, decimals=2, spread=False
            )
            parts += [passes, "\n"]
        if self.differences:
            parts += [
                "\nUCAG − base, paired over the same images:\n\n",
                _summary_table(self.differences, self.columns, "method"),
                "\n",
            ]
        return parts

    def markdown(self) -> str:
        """The summary as Markdown, as summary.md holds it.

        Returns:
            The summary table (the controls last, marked as floors), the passes per image and
                the paired differences.
        """
        return "".join(part if isinstance(part, str) else "\n".join(part.markdown()) for part in self._sections())

    def _repr_html_(self) -> str:
        """Jupyter's view: the summary's tables and notes as HTML."""
        pieces = []
        for part in self._sections():
            if isinstance(part, _Table):
                pieces.append(part.html())
            elif part.strip():
                pieces.append("<p>" + html.escape(part.strip()).replace("*floor*", "<em>floor</em>") + "</p>")
        return '<div class="ucag-summary">' + "".join(pieces) + "</div>"

    def __repr__(self) -> str:
        return f"EvaluationSummary({self.images} images, {len(self.cells)} cells, out={str(self.out)!r})"


def _floors_last(cells: list[Cell], floors: set[tuple[str, str]]) -> list[Cell]:
    """``cells`` in their order, those of the controls (floors) moved to the end."""
    return sorted(cells, key=lambda c: (c.method, c.variant) in floors)  # stable: keeps the order


@dataclass
class _Table:
    """A summary table: its header, its rows of text cells, and which rows are floors."""

    header: list[str]
    rows: list[list[str]]
    floor_rows: list[bool]

    def markdown(self) -> list[str]:
        """The table as Markdown lines; floor rows' names in italics."""
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        for row, floor in zip(self.rows, self.floor_rows, strict=True):
            name = f"*{row[0]}*" if floor else row[0]
            lines.append("| " + " | ".join([name, *row[1:]]) + " |")
        return lines

    def html(self) -> str:
        """The table as HTML; floor rows in italics."""
        return table_html(self.header, self.rows, self.floor_rows)


def _summary_table(
    cells: list[Cell],
    columns: list[str],
    first: str,
    floors: set[tuple[str, str]] | None = None,
    decimals: int = 3,
    spread: bool = True,
) -> _Table:
    """Rows per (method, variant), a column per ``columns`` entry present; rows in
    ``floors`` are marked *floor*. ``spread=False`` (the passes) shows means without
    arrows or intervals."""
    rows: dict[tuple[str, str], dict[str, Cell]] = {}
    for c in cells:
        rows.setdefault((c.method, c.variant), {})[c.column] = c
    present = [col for col in columns if any(col in r for r in rows.values())]
    if spread:
        titled = [registered_column(col) for col in present]
        header = [first] + [f"{c.title} {'↓' if c.lower_is_better else '↑'}" for c in titled]
    else:
        header = [first] + [PASS_TITLES.get(col, col) for col in present]
    table = _Table(header, [], [])
    most = max((c.n for c in cells), default=0)
    for (method, variant), by_column in rows.items():
        entries = []
        for col in present:
            cell = by_column.get(col)
            if cell is None or cell.n == 0:
                entries.append("—")
                continue
            if not spread:
                entries.append(_plain(cell.mean, decimals))
                continue
            text = f"{cell.mean:.{decimals}f}" + (f" ± {cell.ci95:.{decimals}f}" if cell.ci95 is not None else "")
            entries.append(text + (f" (n={cell.n})" if cell.n != most and col != "pointing_game" else ""))
        name = display_name(method, variant)
        floor = bool(floors) and (method, variant) in (floors or set())
        table.rows.append([f"{name} (floor)" if floor else name, *entries])
        table.floor_rows.append(floor)
    return table


def _plain(value: float, decimals: int) -> str:
    """``value`` with at most ``decimals`` decimals, without trailing zeros (36, 3.78)."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _rank_and_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def _broadcast(obj: Any, world: int) -> Any:
    if world == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _cell_value(value: float | None) -> str:
    # repr is the shortest string that reads back to the same float: files are reproducible
    return "" if value is None else repr(float(value))


@dataclass(frozen=True)
class _Run:
    """One evaluation's settings, and measuring one sample with them."""

    model: nn.Module
    target_layer: nn.Module
    pairs: list[tuple[str, str]]
    metrics: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    ucag_options: dict[str, Any]
    baseline_options: dict[str, dict[str, Any]]
    blur: tuple[int, float] | None
    step: int | None
    metric_batch_size: int
    #: how the model's outputs are read: "class" (softmax logits), "binary" (one logit),
    #: "multilabel" (independent sigmoids); docs/algorithm.md §3.1
    target_kind: TargetKind = "class"
    #: the arithmetic of UCAG's patch passes and the metrics' forwards (docs/algorithm.md §10)
    precision: Precision = DEFAULT_PRECISION
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST
    #: what the run learnt while it ran: the metrics' batch size after an out-of-memory back-off
    learnt: dict[str, int] = field(default_factory=dict)
    #: what metrics keep for the whole run (the "randomization" metric's randomised model)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """The metric columns of results.csv."""
        return [c.name for c in columns_of(self.metrics)]

    @property
    def _metric_batch_size(self) -> int:
        """``metric_batch_size``, or the smaller size an out-of-memory back-off settled on."""
        return self.learnt.get("metric_batch_size", self.metric_batch_size)

    @property
    def header(self) -> list[str]:
        return list(KEY_COLUMNS) + self.columns + list(PASS_COLUMNS) + list(COMPUTE_COLUMNS)

    @property
    def compute_values(self) -> list[str]:
        """The COMPUTE_COLUMNS of every row: the precision and the layout that ran."""
        plan = compute_plan(self.model, self.precision, self.channels_last)
        return [plan.precision, str(plan.channels_last).lower()]

    @property
    def curve_metrics(self) -> list[str]:
        return [m for m in self.metrics if MEASURES[m].curve]

    @property
    def curves_header(self) -> list[str]:
        """curves.csv's columns: the key, then the T + 1 scores s_0 ... s_T."""
        pixels = self.input_size * self.input_size
        steps = math.ceil(pixels / (8 * self.input_size if self.step is None else self.step))
        return ["id", "method", "variant", "curve"] + [f"s{k}" for k in range(steps + 1)]

    def config(self, dataset: str) -> dict[str, Any]:
        """What the run computes, as config.json holds it (a rerun must match it)."""
        config = {
            "dataset": dataset,
            "model": type(self.model).__name__,
            "pairs": [list(p) for p in self.pairs],
            "metrics": self.metrics,
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "ucag_options": self.ucag_options,
            "baseline_options": self.baseline_options,
            "blur": list(self.blur) if self.blur else None,
            "step": self.step,
        }
        if "randomization" in self.metrics:
            config["randomization_seed"] = RANDOMIZATION_SEED
        if self.target_kind != "class":  # absent for classes: folders of earlier runs still resume
            config["target_kind"] = self.target_kind
        config["precision"] = self.precision
        config["channels_last"] = self.channels_last
        return json.loads(json.dumps(config, default=repr))  # type: ignore[no-any-return]  # as it reads back (tuples -> lists)

    def measure(self, sample: Any, image: torch.Tensor) -> tuple[list[list[str]], list[list[str]]]:
        """results.csv and curves.csv rows of one sample and its preprocessed ``image``
        (1, C, H, W) (the model in eval mode)."""
        with eval_mode(self.model):
            return self._measure(sample, image)

    def _measure(self, sample: Any, image: torch.Tensor) -> tuple[list[list[str]], list[list[str]]]:
        device = model_device(self.model)
        x = image.to(device, non_blocking=True)
        target, probability = self._target(x, sample.target)
        computed, costs = [], []
        for m, v in self.pairs:
            with count_passes(self.model) as passes:  # the map's cost: counted while it is computed only
                computed.append(self._explain(m, v, self.model, self.target_layer, x, target).to(device))
            costs.append([str(passes.forward), str(passes.backward), _cell_value(passes.megapixels)])
        maps = torch.cat(computed)
        values, curves = self._metric_values(x, maps, target, sample.mask)
        index = target if isinstance(target, int) else int(target.category or 0)
        key = [sample.id, sample.class_name, str(index), _cell_value(probability)]
        result_rows, curve_rows = [], []
        compute = self.compute_values
        for i, (method, variant) in enumerate(self.pairs):
            result_rows.append(
                key + [method, variant] + [_cell_value(values[c][i]) for c in self.columns] + costs[i] + compute
            )
            for name, curve in curves.items():
                curve_rows.append([sample.id, method, variant, name] + [_cell_value(v) for v in curve[i]])
        return result_rows, curve_rows

    def _target(self, x: torch.Tensor, given: int | None) -> tuple[int | Target, float]:
        """The target explained for the image ``x`` and the model's probability of it: for
        softmax classes the ``given`` class (the dataset's label) else the prediction, as an
        index; for the other kinds the predicted side or label (a dataset's labels are
        classes, not sides), as a `ucag.targets` object."""
        with torch.inference_mode():
            output = model_output(self.model(x), 1).float()
        if self.target_kind == "class":
            probabilities = torch.softmax(logits_of(output), dim=1)[0]
            index = int(probabilities.argmax()) if given is None else int(given)
            return index, float(probabilities[index])
        if self.target_kind == "binary":
            side = int(float(output.reshape(-1)[0]) > 0)
            binary = BinaryTarget(side)
            binary.check(output, "target_kind")
            return binary, float(binary.confidence(output)[0])
        label = MultiLabelTarget(int(output[0].argmax()) if output.dim() == 2 else 0)
        label.check(output, "target_kind")
        return label, float(label.confidence(output)[0])

    def _metric_values(
        self, x: torch.Tensor, maps: torch.Tensor, target: int | Target, mask: np.ndarray | None
    ) -> tuple[dict[str, list[float | None]], dict[str, np.ndarray]]:
        """Every column's value per map (None where undefined) and the curves: each chosen
        metric of `ucag.eval.measures.MEASURES` in turn, the mask metrics only where the
        image has a mask with pixels in it after resizing."""
        n = len(maps)
        values: dict[str, list[float | None]] = {c: [None] * n for c in self.columns}
        resized = resize_mask(mask, self.input_size) if mask is not None else None
        given = MetricInput(
            model=self.model,
            target_layer=self.target_layer,
            images=x.expand(n, -1, -1, -1),
            maps=maps,
            targets=[target] * n,
            # an object too small to survive the resize has no mask
            mask=resized if resized is not None and bool(resized.any()) else None,
            step=self.step,
            batch_size=self._metric_batch_size,
            explain=lambda model, layer: torch.cat(
                [self._explain(m, v, model, layer, x, target).cpu() for m, v in self.pairs]
            ),
            cache=self.cache,
            precision=self.precision,
            channels_last=self.channels_last,
        )
        for name in self.metrics:
            spec = MEASURES[name]
            if spec.needs_mask and given.mask is None:
                continue
            given.batch_size, given.learnt_batch_size = self._metric_batch_size, None
            computed = spec.compute(given)
            if given.learnt_batch_size is not None:
                self.learnt["metric_batch_size"] = given.learnt_batch_size
            for col in spec.columns:
                column_values = list(computed[col.name])
                if len(column_values) != n:
                    raise RuntimeError(
                        f"metric {name!r} gave {len(column_values)} values for {col.name!r}, expected {n}"
                    )
                values[col.name] = column_values
        return values, given.curves

    def _explain(
        self, name: str, variant: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int | Target
    ) -> torch.Tensor:
        """One (method, variant)'s float maps for ``x`` with this run's options."""
        maps = explain_with(
            name,
            variant,
            model,
            layer,
            x,
            [target],
            ucag_options=self.ucag_options,
            baseline_options=self.baseline_options,
            blur=self.blur,
            mean=self.mean,
            std=self.std,
            precision=self.precision,
            channels_last=self.channels_last,
            learnt=self.learnt,
        )
        return maps.detach().float()


def _complete_text(path: Path) -> str:
    """A CSV file we append to, without a partial last line left by a killed run."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return text


def _read_rows(path: Path) -> list[list[str]]:
    """The complete rows of a CSV file, header first."""
    return list(csv.reader(io.StringIO(_complete_text(path))))


def _read_records(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the complete rows, by column name, of a CSV file."""
    reader = csv.DictReader(io.StringIO(_complete_text(path)))
    records = list(reader)
    return list(reader.fieldnames or []), records


def _complete_prefix(out: Path, run: _Run) -> int:
    """How many samples a previous run finished (they come first, in dataset order); the
    files are trimmed to exactly those rows."""
    header, curves_header = run.header, run.curves_header
    results, curves = _read_rows(out / RESULTS), _read_rows(out / CURVES)
    if results and results[0] != header:
        raise ValueError(f"out: {out / RESULTS} has other columns than this run writes; choose another folder")
    if curves and curves[0] != curves_header:
        raise ValueError(f"out: {out / CURVES} has other columns than this run writes; choose another folder")
    results = results[1:]
    per_sample, per_sample_curves = len(run.pairs), len(run.pairs) * len(run.curve_metrics)
    ids: list[str] = list(dict.fromkeys(r[0] for r in results))
    done = 0
    for sample_id in ids:
        rows = sum(r[0] == sample_id for r in results)
        curve_rows = sum(r[0] == sample_id for r in curves[1:])
        if rows != per_sample or curve_rows != per_sample_curves:
            break
        done += 1
    kept = set(ids[:done])
    _write_rows(out / RESULTS, [header] + [r for r in results if r[0] in kept])
    _write_rows(out / CURVES, [curves_header] + [r for r in curves[1:] if r[0] in kept])
    return done


def _write_rows(path: Path, rows: Iterable[list[str]], mode: str = "w") -> None:
    with open(path, mode, newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
        f.flush()


def evaluate(
    model: nn.Module,
    target_layer: nn.Module | None,
    dataset: Any,
    out: str | Path,
    *,
    methods: Sequence[str] = ("gradcam",),
    variants: Sequence[str] = ("base", "ucag"),
    baselines: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int = 224,
    ucag_options: dict[str, Any] | None = None,
    baseline_options: dict[str, dict[str, Any]] | None = None,
    blur: tuple[int, float] | None = (5, 3.0),
    step: int | None = None,
    metric_batch_size: int = 8,
    limit: int | None = None,
    progress: bool = True,
    plot: bool = True,
    target_kind: TargetKind = "class",
    precision: Precision = DEFAULT_PRECISION,
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
    workers: int | None = None,
) -> EvaluationSummary:
    """Explain and measure every sample of ``dataset`` with every method in every variant.

    Rows are appended to ``out`` as each sample is done; calling again with the same
    ``out`` and settings resumes. Under an initialised ``torch.distributed`` process group
    every process must call this with the same arguments; samples are shared out and rank 0
    writes the files.

    Args:
        model: The classifier to explain.
        target_layer: The layer of the CAM methods (and CAMERAS); None takes
            [suggest_target_layer][ucag.models.suggest_target_layer]'s.
        dataset: A reader from [ucag.eval.datasets][ucag.eval.datasets], or a spec for
            [open_dataset][ucag.eval.datasets.open_dataset] (e.g. ``"samples"``). Each
            sample's photo is resized to ``input_size`` and normalised with ``mean``/``std``,
            its mask resized alike.
        out: The output folder (created; an existing one with the same settings resumes).
        methods: Names from `ucag.eval.registry.METHODS`, each run in every variant.
        variants: The variants each method runs in (``"base"``, ``"ucag"``...).
        baselines: Added to the comparison: ``"upscale"``, ``"sess"``, ``"sess-matched"``,
            ``"refinecam"`` around each method; ``"cameras"`` and the controls ``"random"``
            and ``"sobel"`` once (see [comparison_pairs][ucag.eval.registry.comparison_pairs]
            and docs/algorithm.md §6.9).
        metrics: Names from `ucag.eval.measures.MEASURES` (None: those registered as
            defaults); the mask metrics only where a sample has a mask.
        mean: The inputs' normalisation, per channel; by default (with ``std``) the model's
            own (timm's ``pretrained_cfg``, the sample model's, a Hugging Face folder's
            ``preprocessor_config.json``; an error when the model does not say).
        std: The normalisation's standard deviations, given with ``mean``.
        input_size: The side in pixels the photos are resized to.
        ucag_options: Go to [UCAG][ucag.explainer.UCAG] (units, patch_size, scale, weighting,
            batch_size).
        baseline_options: Go to the baselines (see [explain_with][ucag.eval.registry.explain_with]).
        blur: The maps' post-processing blur (kernel size, sigma), or None.
        step: Deletion/insertion's pixels per step (None: 8 * ``input_size``).
        metric_batch_size: The metrics' perturbed inputs per forward.
        limit: Evaluate the first ``limit`` samples only (None: all).
        progress: Show a progress bar (rank 0).
        plot: Write curves.png with the summary.
        target_kind: How the model's outputs are read (docs/algorithm.md §3.1): ``"class"``
            (softmax logits, the paper's), ``"binary"`` (one logit) or ``"multilabel"``
            (independent sigmoids). The latter two explain the predicted side or label (the
            datasets' labels are classes); the probability column and the metrics' curves
            then hold its sigmoid, and only pytorch-grad-cam methods (variants base, ucag,
            upscale, sess, sess-matched) and the Sobel control take part.
        precision: The arithmetic of UCAG's patch passes and of the metrics' forwards
            (docs/algorithm.md §10): ``"fp32"``, ``"bf16"`` or ``"fp16"`` (not on the CPU).
            The other variants' maps (base, baselines) are computed in float32. Recorded
            in config.json and in every row of results.csv.
        channels_last: The layout of those passes' inputs: True, False or ``"auto"``
            (channels-last where the precision is lowered and the model has convolutions).
        workers: Processes that read and decode the photos ahead of the explanation (a
            ``DataLoader``'s ``num_workers``); None: one per CPU core beyond the first, at
            most 4; 0 reads them in the main process.

    Returns:
        The [EvaluationSummary][ucag.eval.runner.EvaluationSummary] (on every rank).

    Raises:
        TypeError: ``ucag_options`` is not a dict, a baseline's options are not a dict, or an
            option has the wrong type.
        ValueError: A name, an option or the normalisation is not one ``evaluate`` takes (or
            the model does not say how it normalises its inputs), ``precision`` does not run
            on the model's device, or ``out`` holds a run with other settings.
        RuntimeError: A sample failed (the message names it).
    """
    from .datasets import open_dataset

    if target_kind not in TARGET_KINDS:
        raise ValueError(f"target_kind: expected one of {', '.join(TARGET_KINDS)}, got {target_kind!r}")
    if isinstance(dataset, str):
        dataset = open_dataset(dataset)
    if metrics is None:
        metrics = default_metrics()
    unknown = [m for m in metrics if m not in MEASURES]
    if unknown or not metrics:
        raise ValueError(f"metrics: expected names from {', '.join(metric_names())}, got {list(metrics)}")
    if step is not None and (not isinstance(step, int) or step < 1):
        raise ValueError(f"step: expected a positive number of pixels or None, got {step!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected a positive int or None, got {limit!r}")
    mean, std = _normalization(model, mean, std)
    _check_options(ucag_options, baseline_options, blur, metric_batch_size, input_size, mean, std)
    compute_plan(model, precision, channels_last)
    workers = default_workers() if workers is None else workers
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"workers: expected a number of processes >= 0 or None, got {workers!r}")
    pairs = comparison_pairs(methods, variants, baselines)
    check_target_support(pairs, target_kind)
    metrics = [m for m in MEASURES if m in metrics]
    if target_layer is None:
        target_layer = suggest_target_layer(model, input_size)
    run = _Run(
        model=model,
        target_layer=target_layer,
        pairs=pairs,
        metrics=metrics,
        mean=tuple(mean),
        std=tuple(std),
        input_size=input_size,
        ucag_options=dict(ucag_options or {}),
        baseline_options=dict(baseline_options or {}),
        blur=blur,
        step=step,
        metric_batch_size=metric_batch_size,
        target_kind=target_kind,
        precision=precision,
        channels_last=channels_last,
    )
    total = len(dataset) if limit is None else min(limit, len(dataset))
    out = Path(out)
    rank, world = _rank_and_world()
    start, error = 0, None
    if rank == 0:
        try:
            start = _prepare_folder(out, run, repr(dataset))
        except ValueError as err:
            error = str(err)
    start, error = _broadcast((start, error), world)
    if error:
        raise ValueError(error)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, unit="image", desc=f"evaluate ({len(pairs)} maps per image)")
    _measure_samples(run, dataset, list(range(start, total)), out, rank, world, bar, workers)
    if bar is not None:
        bar.close()
    summary = summarize(out, plot=plot) if rank == 0 else None
    return _broadcast(summary, world)  # type: ignore[no-any-return]


def _normalization(
    model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Sequence[float], Sequence[float]]:
    """The ``mean``/``std`` given, else the model's own (`ucag.models.model_normalization`),
    else an error: numbers under another normalisation than the model's are silently wrong."""
    if mean is not None and std is not None:
        return mean, std
    if (mean is None) != (std is None):
        raise ValueError(
            f"{'std' if std is None else 'mean'}: give mean and std together (got only {'mean' if std is None else 'std'})"
        )
    found = model_normalization(model)
    if found is None:
        raise ValueError(
            f"mean: cannot tell how {type(model).__name__} normalises its inputs (no timm pretrained_cfg, no Hugging Face preprocessor_config.json beside it); "
            "pass mean= and std= (ImageNet's: ucag.data.IMAGENET_MEAN, ucag.data.IMAGENET_STD)"
        )
    return found


def _check_options(
    ucag_options: dict[str, Any] | None,
    baseline_options: dict[str, dict[str, Any]] | None,
    blur: tuple[int, float] | None,
    metric_batch_size: int,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """Every option of `evaluate`, checked before anything is written to ``out`` (a
    bad option must not leave a config.json that refuses the corrected rerun)."""
    if ucag_options is not None and not isinstance(ucag_options, dict):
        raise TypeError(f"ucag_options: expected a dict of UCAG settings, got {type(ucag_options).__name__}")
    try:
        UCAG.check_settings(**(ucag_options or {}))
    except (TypeError, ValueError) as err:
        raise type(err)(f"ucag_options: {err}") from err
    given = sorted(set(ucag_options or {}) & {"precision", "channels_last"})
    if given:
        raise ValueError(
            f"ucag_options: {given[0]} is evaluate's own option (it also runs the metrics); pass {given[0]}= to evaluate"
        )
    check_baseline_options(baseline_options)
    check_blur(blur)
    positive_int("metric_batch_size", metric_batch_size)
    positive_int("input_size", input_size)
    for name, values in (("mean", mean), ("std", std)):
        if (
            not isinstance(values, Sequence)
            or not values
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        ):
            raise ValueError(f"{name}: expected one finite number per channel, got {values!r}")
    if any(v == 0 for v in std):
        raise ValueError(f"std: must not contain 0, got {list(std)}")


def default_workers() -> int:
    """How many processes read the photos by default.

    Returns:
        One per CPU core beyond the first, at most 4 (decoding a photo takes far less than
            explaining it).
    """
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class _Preprocessed(torch.utils.data.Dataset[tuple[Any, torch.Tensor]]):
    """Samples of a dataset with their photo preprocessed, as a DataLoader's workers read them."""

    def __init__(
        self, dataset: Any, indices: list[int], mean: tuple[float, ...], std: tuple[float, ...], size: int
    ) -> None:
        self.dataset, self.indices, self.mean, self.std, self.size = dataset, indices, mean, std, size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[Any, torch.Tensor]:
        sample = self.dataset[self.indices[position]]
        return sample, preprocess_image(sample.rgb, self.mean, self.std, self.size)


def _as_read(item: Any) -> Any:
    """The DataLoader's collate function: one sample at a time, as it was read."""
    return item


def _reader(run: _Run, dataset: Any, indices: list[int], workers: int) -> Iterator[tuple[Any, torch.Tensor]]:
    """The samples ``indices`` and their preprocessed photos, read ``workers`` processes ahead."""
    if not indices:
        return iter(())
    loader = torch.utils.data.DataLoader(
        _Preprocessed(dataset, indices, run.mean, run.std, run.input_size),
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_read,
        pin_memory=model_device(run.model).type == "cuda",
        prefetch_factor=2 if workers else None,
    )
    return iter(loader)


def _measure_samples(
    run: _Run, dataset: Any, pending: list[int], out: Path, rank: int, world: int, bar: Any, workers: int = 0
) -> None:
    """Measure the ``pending`` samples, dealt round-robin to the ``world`` processes and read
    ahead by ``workers`` processes each; rank 0 appends every sample's rows in dataset order
    as they arrive."""
    read = _reader(run, dataset, pending[rank::world], workers)
    for first in range(0, len(pending), world):
        mine = first + rank
        outcome: Any = None
        if mine < len(pending):
            try:
                sample, image = next(read)
                outcome = run.measure(sample, image)
            except Exception as err:  # every rank must learn of it, or the others wait forever
                outcome = f"sample {pending[mine]}: {type(err).__name__}: {err}"
        gathered = _all_gather(outcome, world)
        failures = [g for g in gathered if isinstance(g, str)]
        if failures:
            raise RuntimeError("evaluation failed at " + "; ".join(failures))
        if rank == 0:
            done = [g for g in gathered if g is not None]
            _write_rows(out / RESULTS, [row for rows, _ in done for row in rows], "a")
            _write_rows(out / CURVES, [row for _, rows in done for row in rows], "a")
            if bar is not None:
                bar.update(len(done))


def _prepare_folder(out: Path, run: _Run, dataset: str) -> int:
    """Create the folder's files, or check that the run in it has the same settings and
    trim it to its complete samples; returns how many samples are done."""
    out.mkdir(parents=True, exist_ok=True)
    config = run.config(dataset)
    config_path = out / CONFIG
    if config_path.exists():
        previous = json.loads(config_path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
        if changed:
            raise ValueError(
                f"out: {out} holds a run with other settings ({', '.join(changed)} differ); choose another folder or delete it"
            )
        return _complete_prefix(out, run)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    _write_rows(out / RESULTS, [run.header])
    _write_rows(out / CURVES, [run.curves_header])
    return 0


def _t_quantile(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def _cell(method: str, variant: str, column: str, values: Sequence[float]) -> Cell:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return Cell(method, variant, column, math.nan, None, 0)
    ci = _t_quantile(len(v)) * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else None
    return Cell(method, variant, column, float(v.mean()), ci, len(v))


def summarize(out: str | Path, plot: bool = True) -> EvaluationSummary:
    """Summarise an evaluation folder.

    Reads its ``results.csv`` and ``curves.csv`` and writes ``summary.json``, ``summary.md``
    and (with ``plot``) ``curves.png``.

    Args:
        out: The folder [evaluate][ucag.eval.runner.evaluate] wrote.
        plot: Also draw the mean deletion and insertion curves.

    Returns:
        The [EvaluationSummary][ucag.eval.runner.EvaluationSummary].

    Raises:
        ValueError: The folder holds no results.csv.
    """
    out = Path(out)
    header, rows = _read_records(out / RESULTS)
    if not header:
        raise ValueError(f"out: no {RESULTS} in {out}")
    columns = [c for c in header[len(KEY_COLUMNS) :] if c not in PASS_COLUMNS and c not in COMPUTE_COLUMNS]
    pass_columns = [c for c in PASS_COLUMNS if c in header]  # a folder from before the passes were counted has none
    pairs = list(dict.fromkeys((r["method"], r["variant"]) for r in rows))
    per_class = {c.name for spec in MEASURES.values() if spec.per_class for c in spec.columns}
    cells, differences, passes = [], [], []
    floors = [(m, v) for m, v in pairs if m in METHODS and METHODS[m].kind == "control"]
    for method, variant in pairs:
        mine = [r for r in rows if (r["method"], r["variant"]) == (method, variant)]
        passes += [
            _cell(method, variant, column, [float(r[column]) for r in mine if r[column] != ""])
            for column in pass_columns
        ]
        for column in columns:
            present = [r for r in mine if r[column] != ""]
            if column in per_class:  # dataset protocol: per class, then over classes
                by_class: dict[str, list[float]] = {}
                for r in present:
                    by_class.setdefault(r["target"], []).append(float(r[column]))
                cells.append(_cell(method, variant, column, [float(np.mean(v)) for v in by_class.values()]))
            else:
                cells.append(_cell(method, variant, column, [float(r[column]) for r in present]))
        if variant == "ucag" and (method, "base") in pairs:
            base = {r["id"]: r for r in rows if (r["method"], r["variant"]) == (method, "base")}
            for column in columns:
                diffs = [
                    float(r[column]) - float(base[r["id"]][column])
                    for r in mine
                    if r[column] != "" and r["id"] in base and base[r["id"]][column] != ""
                ]
                differences.append(_cell(method, "ucag", column, diffs))
    images = len(dict.fromkeys(r["id"] for r in rows))
    summary = EvaluationSummary(out, images, columns, cells, differences, passes, floors)
    saved = {
        "images": images,
        "cells": [asdict(c) for c in cells],
        "ucag_minus_base": [asdict(c) for c in differences],
        "passes": [asdict(c) for c in passes],
        "floors": [list(f) for f in floors],
    }
    (out / SUMMARY_JSON).write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    (out / SUMMARY_MD).write_text(summary.markdown(), encoding="utf-8")
    if plot:
        _plot_mean_curves(out, pairs)
    return summary


def _plot_mean_curves(out: Path, pairs: list[tuple[str, str]]) -> None:
    header, curves = _read_records(out / CURVES)
    if not curves:
        return
    import matplotlib.pyplot as plt

    from .plots import plot_curves

    scores = [c for c in header if c.startswith("s")]
    by_name: dict[str, dict[str, np.ndarray]] = {}
    for name in (n for n, spec in MEASURES.items() if spec.curve):
        for method, variant in pairs:
            mine = [
                [r[c] for c in scores]
                for r in curves
                if (r["method"], r["variant"], r["curve"]) == (method, variant, name)
            ]
            if mine:
                by_name.setdefault(name, {})[display_name(method, variant)] = np.asarray(mine, dtype=np.float64)
    fig = plot_curves(deletion=by_name.get("deletion"), insertion=by_name.get("insertion"))
    fig.savefig(out / CURVES_PNG, dpi=100)
    plt.close(fig)


__all__ = ["Cell", "EvaluationSummary", "PASS_COLUMNS", "evaluate", "summarize"]

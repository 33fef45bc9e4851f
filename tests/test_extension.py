"""Extension by registration: a metric and a method registered from outside the package
reach ``evaluate``'s results.csv and summary and the CLI's choices with nothing else
changed; and every registered metric keeps the registry's contract."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

import ucag
from ucag.cli import main
from ucag.eval import measures
from ucag.eval.measures import MEASURES, Column, MetricInput, MetricSpec, register_metric, unregister_metric
from ucag.eval.registry import METHODS, register_method
from ucag.eval.runner import evaluate


@pytest.fixture
def toy_metric_and_method():
    seen: list[MetricInput] = []

    def map_mean(given: MetricInput) -> dict[str, list[float | None]]:
        seen.append(given)
        return {"map_mean": [float(m.mean()) for m in given.maps]}

    register_metric(MetricSpec("map_mean", (Column("map_mean", "map mean", lower_is_better=True),), map_mean))

    @register_method("toy-lrp", "Toy LRP", "propagation")
    def _factory(model: nn.Module, target_layer: nn.Module) -> ucag.bases.LRP:
        return ucag.bases.LRP(model)

    try:
        yield seen
    finally:
        unregister_metric("map_mean")
        del METHODS["toy-lrp"]


def test_registered_metric_and_method_reach_results_summary_and_cli(
    toy_metric_and_method, tmp_path, capsys, sample_model
):
    seen = toy_metric_and_method
    sample = sample_model
    summary = evaluate(
        sample.model,
        sample.target_layer,
        "samples",
        tmp_path,
        methods=["toy-lrp"],
        variants=["base"],
        metrics=["map_mean", "deletion"],
        limit=1,
        progress=False,
        plot=False,
        step=224 * 56,
    )
    with open(tmp_path / "results.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["variant"]) for r in rows] == [("toy-lrp", "base")]
    maps_mean = float(rows[0]["map_mean"])
    assert len(seen) == 1 and seen[0].maps.shape == (1, 224, 224)
    assert maps_mean == pytest.approx(float(seen[0].maps.mean()), rel=1e-6)
    # the registered column in results.csv order, with its title and direction in the summary
    assert list(rows[0])[6:8] == ["deletion", "map_mean"]
    assert "| map mean ↓ |" in summary.markdown().replace("deletion ↓ | ", "")
    assert summary.cell("toy-lrp", "base", "map_mean").mean == pytest.approx(maps_mean)
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "map_mean" in help_text and "toy-lrp" in help_text


def test_a_column_name_belongs_to_one_metric():
    with pytest.raises(ValueError, match="already filled by the metric 'deletion'"):
        register_metric(MetricSpec("again", (Column("deletion", "deletion"),), lambda given: {}))
    with pytest.raises(TypeError, match="^spec: expected a MetricSpec"):
        register_metric("deletion")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(MEASURES))
def test_every_registered_metric_fills_its_columns(name):
    # a tiny model, two maps and a mask: each metric returns one value per map for each of
    # its columns, and nothing else
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    layer = model[1]
    images = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1)
    maps = torch.rand(2, 32, 32)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:20, 8:20] = True

    def explain(other_model: nn.Module, other_layer: nn.Module) -> torch.Tensor:
        return torch.rand(2, 32, 32)

    given = MetricInput(model.eval(), layer, images, maps, [1, 2], mask, 32 * 8, 8, explain)
    spec = MEASURES[name]
    values = spec.compute(given)
    assert set(values) == {c.name for c in spec.columns}
    for column in spec.columns:
        assert len(values[column.name]) == 2
        assert all(v is None or math.isfinite(float(v)) for v in values[column.name])
    assert (name in given.curves) == spec.curve
    assert measures.column(spec.columns[0].name) is spec.columns[0]

"""The model zoo sweep (tests/zoo.py, docs/model_zoo.md): the suggested CAM layer and
UCAG(GradCAM) on one model of every timm family, every torchvision classification builder
and every Hugging Face image-classification architecture, with random weights. Marked slow:
about 10 minutes on 2 cores."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import zoo

pytest.importorskip("timm")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

ENTRIES = zoo.all_models()
TABLE = Path(__file__).parent.parent / "docs" / "model_zoo.md"


def _documented() -> dict[tuple[str, str], tuple[str, str]]:
    """(library, model) -> (layer, outcome) from docs/model_zoo.md's table."""
    rows = {}
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(zoo.COLUMNS) and cells[0] in ("timm", "torchvision", "transformers"):
            rows[(cells[0], cells[2].strip("`"))] = (cells[3].strip("`").replace("—", ""), cells[4])
    return rows


DOCUMENTED = _documented()


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.library}:{e.name}" for e in ENTRIES])
def test_the_suggested_layer_and_ucag_on(entry: zoo.ZooModel) -> None:
    result = zoo.check(entry)
    if result.unbuilt:
        assert DOCUMENTED.get((entry.library, entry.name)) == ("", "not built"), (
            "docs/model_zoo.md is out of date: python tests/zoo.py"
        )
        pytest.skip(f"does not build here: {result.unbuilt}")
    expected = zoo.REFUSED.get(entry.name)
    if expected is None:
        assert not result.refused, f"refused: {result.refused}"
    else:
        assert result.refused and re.search(expected, result.refused), (
            f"expected a refusal matching {expected!r}, got {result.refused or 'none'}"
        )
    # the docs table says what the sweep finds
    assert DOCUMENTED.get((entry.library, entry.name)) == (result.layer, zoo.outcome(result)), (
        "docs/model_zoo.md is out of date: python tests/zoo.py"
    )


def test_the_sweep_covers_every_timm_family() -> None:
    assert set(zoo.TIMM) == zoo.timm_families()


def test_at_least_95_percent_of_the_families_pass() -> None:
    unbuilt = {(library, name) for (library, name), (_, outcome) in DOCUMENTED.items() if outcome == "not built"}
    families = {(e.library, e.family) for e in ENTRIES if (e.library, e.name) not in unbuilt}
    refused = {(e.library, e.family) for e in ENTRIES if e.name in zoo.REFUSED}
    assert len(refused) <= 0.05 * len(families), sorted(refused)
    assert set(DOCUMENTED) == {(e.library, e.name) for e in ENTRIES}

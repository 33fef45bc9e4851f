"""ucag.evaluate: per-image rows equal the metrics computed directly, the summary's
statistics, resume after a killed run, and a 2-process torch.distributed run."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import ucag
from ucag.eval import metrics
from ucag.eval.datasets import SampleImages
from ucag.eval.runner import evaluate, summarize

pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import GradCAM  # noqa: E402

STEP = 224 * 56  # 4 deletion/insertion steps: enough to test, fast on CPU
FAST = {"units": 2}


@pytest.fixture(scope="module")
def small_run(sample_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    dataset = SampleImages(["chelsea", "voc"])
    summary = evaluate(
        sample_model.model,
        sample_model.target_layer,
        dataset,
        out,
        methods=["gradcam"],
        metrics=["deletion", "insertion", "density", "pointing_game", "energy_pointing_game", "segmentation"],
        mean=sample_model.mean,
        std=sample_model.std,
        ucag_options=FAST,
        step=STEP,
        progress=False,
    )
    return out, summary, dataset


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.batch_comparison
def test_rows_equal_the_metrics_computed_directly(small_run, sample_model):
    """The runner batches the metrics' forwards across images and steps, the direct calls
    take one image: equal up to float32 rounding that depends on the batch size."""
    out, _, dataset = small_run
    rows = _rows(out / "results.csv")
    assert [(r["id"], r["method"], r["variant"]) for r in rows] == [
        ("chelsea", "gradcam", "base"),
        ("chelsea", "gradcam", "ucag"),
        ("voc", "gradcam", "base"),
        ("voc", "gradcam", "ucag"),
    ]
    sm = sample_model
    for sample in dataset:
        x = ucag.data.preprocess_image(sample.rgb, sm.mean, sm.std, 224)
        target = sample.target if sample.target is not None else int(sm.model(x).argmax())
        with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam:
            saliency = ucag.UCAG(cam, **FAST).explain(x, [target]).saliency
        row = next(r for r in rows if r["id"] == sample.id and r["variant"] == "ucag")
        assert int(row["target"]) == target
        assert float(row["deletion"]) == pytest.approx(
            metrics.deletion(sm.model, x, saliency, [target], step=STEP).mean, abs=1e-5
        )
        assert float(row["insertion"]) == pytest.approx(
            metrics.insertion(sm.model, x, saliency, [target], step=STEP).mean, abs=1e-5
        )
        positive, negative = metrics.map_density(sm.model, x, saliency, [target])
        assert float(row["positive_density"]) == pytest.approx(positive.mean, rel=1e-3)
        assert float(row["negative_density"]) == pytest.approx(negative.mean, rel=1e-3)
        if sample.mask is None:  # chelsea: no ground truth, the mask metrics stay empty
            assert row["pointing_game"] == row["energy_pointing_game"] == row["average_precision"] == ""
        else:
            mask = ucag.data.resize_mask(sample.mask, 224)
            assert float(row["pointing_game"]) == metrics.pointing_game(saliency, mask).mean
            assert float(row["energy_pointing_game"]) == pytest.approx(
                metrics.energy_pointing_game(saliency, mask).mean, abs=1e-6
            )
            assert float(row["average_precision"]) == pytest.approx(
                metrics.segmentation_scores(saliency, mask).mean_ap, abs=1e-6
            )
    curves = _rows(out / "curves.csv")
    assert len(curves) == 4 * 2  # deletion and insertion for each row
    deletion = [float(curves[0][f"s{k}"]) for k in range(5)]
    expected = (sum(deletion) - deletion[0] / 2 - deletion[-1] / 2) / 4
    assert float(rows[0]["deletion"]) == pytest.approx(expected, abs=1e-7)
    assert float(rows[0]["probability"]) == pytest.approx(deletion[0], abs=1e-5)  # s_0 is the unchanged image


def test_summary_files(small_run):
    out, summary, _ = small_run
    for name in ("config.json", "summary.json", "summary.md", "curves.png"):
        assert (out / name).stat().st_size > 0
    rows = _rows(out / "results.csv")
    base = [float(r["deletion"]) for r in rows if r["variant"] == "base"]
    cell = summary.cell("gradcam", "base", "deletion")
    assert cell.n == 2 and cell.mean == pytest.approx(np.mean(base))
    from scipy.stats import t

    assert cell.ci95 == pytest.approx(t.ppf(0.975, 1) * np.std(base, ddof=1) / math.sqrt(2))
    assert summary.cell("gradcam", "ucag", "energy_pointing_game").n == 1  # only the VOC photo has masks
    saved = json.loads((out / "summary.json").read_text())
    assert saved["images"] == 2 and len(saved["cells"]) == len(summary.cells)
    table = (out / "summary.md").read_text()
    assert "| UCAG(Grad-CAM) |" in table and "deletion ↓" in table and "insertion ↑" in table


@pytest.mark.batch_comparison
def test_baselines_run_as_peers(sample_model, tmp_path):
    sm = sample_model
    options = {"sess": {"num_scales": 2}, "cameras": {"resolutions": [224, 324]}, "upscale": {"factor": 2.0}}
    evaluate(
        sm.model,
        sm.target_layer,
        SampleImages(["coffee"]),
        tmp_path,
        methods=["gradcam"],
        variants=["base"],
        baselines=["upscale", "sess", "cameras"],
        baseline_options=options,
        metrics=["deletion"],
        mean=sm.mean,
        std=sm.std,
        step=STEP,
        progress=False,
        plot=False,
    )
    rows = {(r["method"], r["variant"]): float(r["deletion"]) for r in _rows(tmp_path / "results.csv")}
    assert list(rows) == [("gradcam", "base"), ("gradcam", "upscale"), ("gradcam", "sess"), ("cameras", "base")]
    from pytorch_grad_cam import SESS
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from ucag.postprocess import cam_postprocess

    x = ucag.data.preprocess_image(ucag.data.sample_image("coffee").rgb, sm.mean, sm.std, 224)
    with GradCAM(model=sm.model, target_layers=[sm.target_layer]) as cam:
        upscaled = ucag.baselines.Upscale(cam, 2.0).explain(x, [967]).saliency
    with SESS(model=sm.model, target_layers=[sm.target_layer], num_scales=2) as sess:
        sess_map = cam_postprocess(torch.as_tensor(sess(x, [ClassifierOutputTarget(967)])))
    cameras = ucag.baselines.CAMERAS(sm.model, sm.target_layer, resolutions=[224, 324]).explain(x, [967]).saliency
    for key, saliency in (
        (("gradcam", "upscale"), upscaled),
        (("gradcam", "sess"), sess_map),
        (("cameras", "base"), cameras),
    ):
        # the runner batches the deletion steps of all four maps; float32 rounding differs
        assert rows[key] == pytest.approx(metrics.deletion(sm.model, x, saliency, [967], step=STEP).mean, abs=1e-5), key
    assert len(set(rows.values())) == 4  # four different maps


def test_propagation_methods_join_a_comparison(sample_model):
    from ucag.bases.propagation import SoftmaxGradientLRP
    from ucag.eval.registry import explain_with
    from ucag.postprocess import cam_postprocess

    sm = sample_model
    x = ucag.data.preprocess_image(ucag.data.sample_image("chelsea").rgb, sm.mean, sm.std, 224)
    base = explain_with("sglrp", "base", sm.model, sm.target_layer, x, [285])
    with_ucag = explain_with("sglrp", "ucag", sm.model, sm.target_layer, x, [285], ucag_options=FAST)
    method = SoftmaxGradientLRP(sm.model)
    torch.testing.assert_close(base, cam_postprocess(torch.as_tensor(method(input_tensor=x, targets=[285]))))
    torch.testing.assert_close(with_ucag, cam_postprocess(ucag.UCAG(method, **FAST).explain(x, [285]).raw))
    assert not torch.allclose(base, with_ucag, atol=1e-2)


def _write_results(out: Path, rows: list[tuple[str, int, str, float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "class_name", "target", "probability", "method", "variant", "pointing_game", "deletion"])
        for image, target, variant, value in rows:
            w.writerow([image, "", target, 0.5, "gradcam", variant, value, value])
    (out / "curves.csv").write_text("id,method,variant,curve,s0\n")


def test_pointing_game_averages_per_class_then_over_classes(tmp_path):
    # class 1: 3 hits of 4 images; class 2: 0 of 1. Per class: 0.75 and 0 -> 0.375,
    # while the plain mean over the 5 images would be 0.6.
    rows = [("a", 1, "base", 1), ("b", 1, "base", 1), ("c", 1, "base", 1), ("d", 1, "base", 0), ("e", 2, "base", 0)]
    _write_results(tmp_path, rows)
    summary = summarize(tmp_path, plot=False)
    pointing = summary.cell("gradcam", "base", "pointing_game")
    assert pointing.mean == pytest.approx(0.375) and pointing.n == 2
    assert summary.cell("gradcam", "base", "deletion").mean == pytest.approx(0.6)


def test_paired_differences(tmp_path):
    rows = [
        ("a", 1, "base", 0.5),
        ("a", 1, "ucag", 0.25),
        ("b", 1, "base", 0.5),
        ("b", 1, "ucag", 0.5),
        ("c", 2, "base", 1.0),
    ]
    _write_results(tmp_path, rows)
    summary = summarize(tmp_path, plot=False)
    diff = next(c for c in summary.differences if c.column == "deletion")
    assert diff.n == 2 and diff.mean == pytest.approx(-0.125)  # image c has no UCAG row: unpaired, left out
    assert "UCAG − base" in (tmp_path / "summary.md").read_text()


def test_bad_settings_name_the_argument(sample_model, tmp_path, small_run):
    sm = sample_model
    call = dict(mean=sm.mean, std=sm.std, progress=False)
    with pytest.raises(ValueError, match="metrics"):
        evaluate(sm.model, sm.target_layer, SampleImages(["chelsea"]), tmp_path / "a", metrics=["accuracy"], **call)
    with pytest.raises(ValueError, match="methods"):
        evaluate(sm.model, sm.target_layer, SampleImages(["chelsea"]), tmp_path / "b", methods=["gradcam3"], **call)
    with pytest.raises(ValueError, match="step"):
        evaluate(sm.model, sm.target_layer, SampleImages(["chelsea"]), tmp_path / "c", step=0, **call)
    with pytest.raises(ValueError, match="SESS"):
        evaluate(
            sm.model,
            sm.target_layer,
            SampleImages(["chelsea"]),
            tmp_path / "d",
            methods=["cameras"],
            baselines=["sess"],
            **call,
        )
    out = small_run[0]  # a folder written with other settings is not mixed with this run
    with pytest.raises(ValueError, match="other settings.*ucag_options"):
        evaluate(
            sm.model,
            sm.target_layer,
            SampleImages(["chelsea", "voc"]),
            out,
            methods=["gradcam"],
            ucag_options={"units": 3},
            **call,
        )


RUNNER = textwrap.dedent(
    """
    import os, sys
    import ucag
    from ucag.data import load_sample_model
    from ucag.eval.datasets import SampleImages
    from ucag.eval.runner import evaluate

    class Dying(SampleImages):
        # the process dies (no clean-up, like a kill) when it reaches sample DIE_AT
        def __getitem__(self, i):
            if i == int(os.environ.get("DIE_AT", "-1")):
                os._exit(9)
            return super().__getitem__(i)

    sm = load_sample_model()
    evaluate(sm.model, sm.target_layer, Dying(["chelsea", "coffee", "voc"]), sys.argv[1], methods=["gradcam"],
             metrics=["deletion", "insertion", "energy_pointing_game"], mean=sm.mean, std=sm.std,
             ucag_options={"units": 2}, step=224 * 56, progress=False, workers=0)  # killed in this process
    """
)


def _run_script(script: Path, out: Path, **env) -> int:
    return subprocess.run([sys.executable, str(script), str(out)], env={**os.environ, **env}, timeout=600).returncode


OUTPUTS = ("results.csv", "curves.csv", "config.json", "summary.json", "summary.md")


@pytest.mark.pretrained  # the command line on the sample model, in subprocesses
def test_resume_after_a_killed_run_gives_the_same_files(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    assert _run_script(script, tmp_path / "whole") == 0
    assert _run_script(script, tmp_path / "resumed", DIE_AT="2") == 9
    partial = _rows(tmp_path / "resumed" / "results.csv")
    assert [r["id"] for r in partial] == ["chelsea", "chelsea", "coffee", "coffee"]  # written as they were done
    assert not (tmp_path / "resumed" / "summary.md").exists()
    with open(tmp_path / "resumed" / "results.csv", "a", encoding="utf-8") as f:  # a row cut short by the kill
        f.write("voc,,4,0.9,gradcam,ba")
    assert _run_script(script, tmp_path / "resumed") == 0
    for name in OUTPUTS:
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "whole" / name).read_text(), name


def _numbers(path: Path) -> list[list[str | float]]:
    def parse(cell: str) -> str | float:
        try:
            return float(cell)
        except ValueError:
            return cell

    with open(path, encoding="utf-8", newline="") as f:
        return [[parse(c) for c in row] for row in csv.reader(f)]


@pytest.mark.pretrained  # the command line on the sample model, in subprocesses
def test_two_processes_under_torchrun_write_what_one_process_writes(tmp_path):
    common = ["evaluate", "--samples", "--limit", "3", "--methods", "gradcam", "--units", "2", "--step", str(224 * 56)]
    common += ["--metrics", "deletion", "insertion", "pointing_game", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "ucag", *common, "--out", str(tmp_path / "one")], env=env, timeout=600
    )
    assert single.returncode == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533"]
    double = subprocess.run([*launcher, "-m", "ucag", *common, "--out", str(tmp_path / "two")], env=env, timeout=600)
    assert double.returncode == 0
    for name in ("results.csv", "curves.csv"):
        one, two = _numbers(tmp_path / "one" / name), _numbers(tmp_path / "two" / name)
        assert len(one) == len(two) == (3 * 2 * 2 + 1 if name == "curves.csv" else 3 * 2 + 1)
        for a, b in zip(one, two, strict=True):
            assert [c for c in a if isinstance(c, str)] == [c for c in b if isinstance(c, str)]
            np.testing.assert_allclose(
                [c for c in a if isinstance(c, float)], [c for c in b if isinstance(c, float)], atol=1e-5
            )
    assert (tmp_path / "two" / "summary.md").exists() and (tmp_path / "two" / "curves.png").exists()


def test_evaluate_measures_road(sample_model, tmp_path):
    summary = evaluate(
        sample_model.model,
        None,
        SampleImages(["coffee"]),
        tmp_path,
        methods=["gradcam"],
        metrics=["road"],
        ucag_options=FAST,
        progress=False,
        plot=False,
    )
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-8:] == [
        "road_morf",
        "road_lerf",
        "road_combined",
        "forward_passes",
        "backward_passes",
        "forward_mpx",
        "precision",
        "channels_last",
    ]  # the metrics, then the cost, then the arithmetic it ran in
    for variant in ("base", "ucag"):
        morf, lerf, combined = (
            summary.cell("gradcam", variant, c) for c in ("road_morf", "road_lerf", "road_combined")
        )
        assert morf is not None and lerf is not None and combined is not None
        assert combined.mean == pytest.approx((lerf.mean - morf.mean) / 2) and lerf.mean > morf.mean
    assert "ROAD combined" in (tmp_path / "summary.md").read_text()

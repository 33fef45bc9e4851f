"""The ``ucag`` command line on the bundled model and photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ucag.cli import main


@pytest.mark.pretrained  # a whole command run
def test_explain_bundled_photo_writes_a_picture(tmp_path, capsys):
    assert main(["explain", "coffee", "--units", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "class 967 'espresso'" in out and "confidence" in out
    png = tmp_path / "coffee_gradcam.png"
    assert str(png) in out
    picture = np.asarray(Image.open(png).convert("RGB"))
    assert picture.shape[0] > 200 and picture.shape[1] > 2 * picture.shape[0]
    assert picture.std() > 20  # a real figure, not a blank canvas


@pytest.mark.pretrained  # a whole command run
def test_explain_with_a_signed_base_draws_signed_maps(tmp_path, capsys, monkeypatch):
    """A propagation method from the registry: its maps keep their sign and are drawn with
    the signed colour scale; a CAM's maps are not."""
    from ucag import viz

    drawn = []
    original = viz.show_signed
    monkeypatch.setattr(
        viz, "show_signed", lambda raw, *args, **kwargs: drawn.append(np.asarray(raw)) or original(raw, *args, **kwargs)
    )
    assert main(["explain", "chelsea", "--method", "clrp", "--units", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "c*LRP" in out and (tmp_path / "chelsea_clrp.png").exists()
    assert len(drawn) == 2 and all((m < 0).any() and (m > 0).any() for m in drawn)  # base and UCAG, signed
    assert main(["explain", "chelsea", "--units", "2", "--out", str(tmp_path)]) == 0
    assert len(drawn) == 2


def test_explain_a_file_with_a_user_model(tmp_path, capsys):
    torchvision = __import__("torchvision")
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    weights = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), weights)
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((120, 90, 3)) * 255).astype(np.uint8)).save(photo)
    argv = [
        "explain",
        str(photo),
        "--model",
        "torchvision.models:resnet18",
        "--weights",
        str(weights),
        "--layer",
        "layer4",
        "--units",
        "2",
        "--method",
        "gradcam++",
        "--out",
        str(tmp_path),
    ]
    # resnet18() builds 1000 classes; the 7-class weights do not fit: a clear error, no traceback
    assert main(argv) == 2
    assert "size mismatch" in capsys.readouterr().err
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    assert main(argv) == 0
    assert (tmp_path / "photo_gradcam++.png").exists()


def test_bad_arguments_exit_2(capsys):
    assert main(["explain", "no_such_image.png", "--units", "2"]) == 2
    assert "IMAGE" in capsys.readouterr().err
    assert main(["explain", "chelsea", "--units", "0"]) == 2
    assert "units" in capsys.readouterr().err


@pytest.mark.pretrained  # a whole command run
def test_tune_writes_table_scores_and_plot(tmp_path, capsys):
    argv = ["tune", "chelsea", "coffee", "--units", "2", "3", "--patch-fractions", "0.55", "--weightings", "exp"]
    argv += ["--global-views", "none", "--step", str(224 * 56), "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Recommended: `ucag.UCAG(cam, units=" in out
    rows = (tmp_path / "tune.csv").read_text().splitlines()
    assert rows[0].startswith("units,patch_fraction") and len(rows) == 1 + 2 * 2  # 2 settings x 2 photos
    assert {r.split(",")[5] for r in rows[1:]} == {"chelsea", "coffee"}
    assert (tmp_path / "tune.md").read_text().count("\n| n=") == 2
    assert np.asarray(Image.open(tmp_path / "tune.png")).std() > 10


@pytest.mark.pretrained  # a whole command run
def test_evaluate_with_global_view(tmp_path, capsys):
    argv = [
        "evaluate",
        "--samples",
        "--limit",
        "1",
        "--units",
        "2",
        "--global-view",
        "product",
        "--step",
        str(224 * 56),
    ]
    argv += ["--metrics", "deletion", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    assert "| UCAG(Grad-CAM++) |" in capsys.readouterr().out
    import json

    assert json.loads((tmp_path / "config.json").read_text())["ucag_options"]["global_view"] == "product"


@pytest.mark.pretrained  # a whole command run
def test_evaluate_takes_controls_and_peers(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from ucag.eval import runner

    seen = {}

    def fake_evaluate(model, target_layer, dataset, out, **kwargs):
        seen.update(kwargs, target_layer=target_layer)
        return SimpleNamespace(markdown=lambda: "| table |", out=out)

    monkeypatch.setattr(runner, "evaluate", fake_evaluate)
    argv = [
        "evaluate",
        "--samples",
        "--methods",
        "gradcam",
        "--baselines",
        "random",
        "sobel",
        "sess",
        "sess-matched",
        "refinecam",
    ]
    assert main([*argv, "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"]) == 0
    assert (
        seen["baselines"] == ["random", "sobel", "sess", "sess-matched", "refinecam"]
        and seen["target_layer"] is not None
    )
    assert "| table |" in capsys.readouterr().out
    _fails(capsys, [*argv, "sesss", "--out", str(tmp_path / "bad")], "--baselines", "'sesss'")
    _fails(
        capsys,
        ["evaluate", "--samples", "--methods", "random", "--out", str(tmp_path / "bad")],
        "--methods",
        "'random'",
    )
    assert not (tmp_path / "bad").exists()


# --- every failure: one line "ucag: error: ...", exit 2 (usage) or 1 (failure) ---------


def _error_line(capsys) -> str:
    """The one line the command printed to stderr, checked: ``ucag: error: ...``, no traceback."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ucag: error: "), err
    return lines[0]


def _fails(capsys, argv, *named, status=2) -> str:
    assert main(argv) == status
    line = _error_line(capsys)
    for text in named:
        assert text in line, line
    return line


def _photo(path, size=(48, 64)):
    Image.fromarray((np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)).save(path, quality=95)
    return path


def _truncated_jpeg(tmp_path):
    whole = _photo(tmp_path / "whole.jpg", (240, 320)).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    return cut


@pytest.mark.parametrize("command", ["explain", "tune"])
def test_bad_image_files_are_one_line_naming_the_file(tmp_path, capsys, command):
    """A truncated JPEG, a folder, a file that is no image, a missing file: exit 2 before
    any model is loaded, one line naming the file."""
    cut = _truncated_jpeg(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    folder = tmp_path / "photos"
    folder.mkdir()
    out = tmp_path / "out"
    common = ["--out", str(out)] + (["--no-progress"] if command == "tune" else [])
    assert "truncated" in _fails(capsys, [command, str(cut), *common], str(cut))
    assert "folder" in _fails(capsys, [command, "chelsea", str(folder), *common], str(folder))
    assert "not an image" in _fails(capsys, [command, str(text), *common], str(text))
    assert "not an image" in _fails(capsys, [command, str(empty), *common], str(empty))
    assert "no such file" in _fails(capsys, [command, str(tmp_path / "nope.png"), *common], "nope.png")
    assert not out.exists()  # nothing written


def test_argument_errors_are_one_line_too(capsys):
    """argparse's own errors: one line naming the option and where the help is, exit 2."""
    _fails(capsys, ["explain"], "IMAGE", "ucag explain --help")
    _fails(capsys, ["explain", "chelsea", "--units", "x"], "--units", "'x'")
    _fails(capsys, ["explain", "chelsea", "--method", "nope"], "--method", "gradcam")
    _fails(capsys, ["explian", "chelsea"], "expl", "ucag --help")
    _fails(capsys, ["evaluate", "--samples", "--dataset", "samples"], "--dataset", "--samples")
    with pytest.raises(SystemExit) as exit_info:  # --help still prints the help and exits 0
        main(["explain", "--help"])
    assert exit_info.value.code == 0


def test_usage_errors_are_value_errors():
    from ucag.cli import UsageError

    assert issubclass(UsageError, ValueError)


def test_a_failure_while_running_is_one_line_with_its_type_exit_1(tmp_path, capsys, monkeypatch):
    import ucag

    def boom(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2.00 GiB")

    monkeypatch.setattr(ucag.UCAG, "explain", boom)
    line = _fails(capsys, ["explain", "chelsea", "--units", "2", "--out", str(tmp_path)], status=1)
    assert line == "ucag: error: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    monkeypatch.setenv("UCAG_DEBUG", "1")  # a developer asks for the traceback
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        main(["explain", "chelsea", "--units", "2", "--out", str(tmp_path)])
    capsys.readouterr()
    monkeypatch.delenv("UCAG_DEBUG")

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ucag.UCAG, "explain", interrupt)
    assert (
        _fails(capsys, ["explain", "chelsea", "--units", "2", "--out", str(tmp_path)], status=130)
        == "ucag: error: interrupted"
    )


# --- models, layers, weights, targets ---------------------------------------------------


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """An importable module ``cli_factories`` with factories that raise or return no model."""
    (tmp_path / "cli_factories.py").write_text(
        "def broken():\n    raise RuntimeError('no GPU here')\n\ndef not_a_model():\n    return 42\n\nNOT_CALLABLE = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cli_factories"


def test_bad_models_are_one_line_naming_the_option(tmp_path, capsys, factories):
    photo = str(_photo(tmp_path / "photo.png"))
    run = ["explain", photo, "--units", "2", "--out", str(tmp_path / "out")]
    assert "no submodule 'no.such.layer'" in _fails(
        capsys, [*run, "--model", "torchvision.models:resnet18", "--layer", "no.such.layer"], "--layer", "layer4"
    )
    assert "did you mean layer4" in _fails(
        capsys, [*run, "--model", "torchvision.models:resnet18", "--layer", "layer5"], "--layer"
    )
    _fails(capsys, [*run, "--model", "torchvision.models:resnet18", "--layer", "fc"], "--layer", "'fc'", "(1, 1000)")
    _fails(capsys, [*run, "--model", "torchvision.models:resnet18", "--layer", "layer4.1.relu"], "--layer", "2 times")
    _fails(
        capsys,
        [*run, "--model", "torchvision.models.resnet18", "--layer", "layer4"],
        "--model",
        "package.module:factory",
    )
    _fails(
        capsys,
        [*run, "--model", "no_such_package.models:net", "--layer", "layer4"],
        "--model",
        "cannot import 'no_such_package.models'",
        "No module named",
    )
    _fails(capsys, [*run, "--model", "torchvision.models:resnet9000", "--layer", "layer4"], "--model", "'resnet9000'")
    _fails(
        capsys,
        [*run, "--model", f"{factories}:broken", "--layer", "layer4"],
        "--model",
        "raised RuntimeError: no GPU here",
    )
    _fails(capsys, [*run, "--model", f"{factories}:not_a_model", "--layer", "layer4"], "--model", "returned a int")
    _fails(capsys, [*run, "--model", f"{factories}:NOT_CALLABLE", "--layer", "layer4"], "--model", "not a function")
    assert not (tmp_path / "out").exists()


def test_bad_weights_are_one_line_naming_the_file(tmp_path, capsys):
    photo = str(_photo(tmp_path / "photo.png"))
    run = [
        "explain",
        photo,
        "--model",
        "torchvision.models:resnet18",
        "--layer",
        "layer4",
        "--units",
        "2",
        "--out",
        str(tmp_path / "out"),
    ]
    missing = str(tmp_path / "missing.pth")
    _fails(capsys, [*run, "--weights", missing], "--weights", "no such file", missing)
    _fails(capsys, [*run, "--weights", str(tmp_path)], "--weights", "folder")
    _fails(capsys, [*run, "--weights", photo], "--weights", "cannot read", photo)
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    _fails(
        capsys,
        [*run, "--weights", str(other)],
        "--weights",
        str(other),
        "does not fit",
        "missing from the file",
        "'weight'",
    )
    torch.save([1, 2, 3], other)
    _fails(capsys, [*run, "--weights", str(other)], "--weights", "holds a list")
    # options of --model given without it: refused, not silently ignored
    _fails(capsys, ["explain", "chelsea", "--weights", str(other)], "--weights", "--model")
    _fails(capsys, ["explain", "chelsea", "--std", "1", "1", "1"], "--std", "--model")
    _fails(capsys, [*run, "--std", "0.2", "0", "0.2"], "--std", "'0'")


@pytest.mark.pretrained  # a whole command run
def test_layer_applies_to_the_sample_model(tmp_path, capsys):
    """--layer without --model names a submodule of the sample EfficientNet-Lite0."""
    line = _fails(
        capsys,
        ["explain", "chelsea", "--layer", "no.such.layer", "--out", str(tmp_path)],
        "--layer",
        "sample model",
        "'no.such.layer'",
    )
    assert "head_activation" in line  # the modules it has
    _fails(capsys, ["explain", "chelsea", "--layer", "_fc", "--out", str(tmp_path)], "--layer", "'_fc'")
    assert main(["explain", "chelsea", "--layer", "_blocks.15", "--units", "2", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "chelsea_gradcam.png").exists()


@pytest.mark.parametrize("target", ["5000", "-1", "1000"])
def test_target_out_of_range_is_refused_before_any_method_runs(tmp_path, capsys, monkeypatch, target):
    from ucag.eval.registry import MethodSpec

    def never(*args, **kwargs):
        raise AssertionError("a base method was built")

    monkeypatch.setattr(MethodSpec, "build", never)
    line = _fails(
        capsys,
        ["explain", "chelsea", "--target", target, "--out", str(tmp_path / "out")],
        "--target",
        target,
        "0 to 999",
    )
    assert "1000 outputs" in line
    assert not (tmp_path / "out").exists()


def test_units_that_cut_no_grid_are_refused(tmp_path, capsys):
    _fails(capsys, ["explain", "chelsea", "--units", "0"], "--units", "'0'")
    _fails(capsys, ["explain", "chelsea", "--units", "1", "--out", str(tmp_path)], "--units", "2 or more")
    _fails(capsys, ["explain", "chelsea", "--batch-size", "0"], "--batch-size")
    _fails(
        capsys, ["explain", "chelsea", "--out", str(_photo(tmp_path / "photo.png"))], "--out", "photo.png", "is a file"
    )


# --- evaluate and tune: checked before anything is written -------------------------------


def test_evaluate_bad_datasets_are_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    run = ["--out", str(out), "--no-progress", "--device", "cpu"]
    _fails(
        capsys,
        ["evaluate", "--dataset", "imagenet:/no/such/root", *run],
        "--dataset",
        "/no/such/root",
        "not a directory",
    )
    _fails(capsys, ["evaluate", "--dataset", "voc2007:/no/such/root", *run], "--dataset", "/no/such/root")
    for spec in ("imagenet", "imagenet:", "nonsense:/x", "coco2014:/x"):
        _fails(capsys, ["evaluate", "--dataset", spec, *run], f"--dataset '{spec}'", "imagenet:ROOT")
    _fails(capsys, ["evaluate", "--samples", "--methods", "lrp", "--variants", "sess", *run], "--variants", "lrp")
    _fails(capsys, ["evaluate", "--samples", *run, "--device", "tpu:7"], "--device", "tpu:7")
    assert not out.exists()


@pytest.mark.parametrize("option", ["--batch-size", "--units", "--metric-batch-size", "--step", "--limit"])
def test_evaluate_bad_numbers_write_nothing(tmp_path, capsys, option):
    out = tmp_path / "run"
    _fails(
        capsys,
        ["evaluate", "--samples", option, "0", "--out", str(out), "--no-progress", "--device", "cpu"],
        option,
        "'0'",
    )
    assert not out.exists()


def test_evaluate_a_refused_command_leaves_the_folder_to_the_corrected_one(tmp_path, capsys):
    """--batch-size 0 once wrote config.json before failing, so the corrected command in
    the same --out was refused as "a run with other settings"."""
    out = tmp_path / "run"
    argv = ["evaluate", "--samples", "--methods", "gradcam", "--limit", "1", "--units", "2", "--metrics", "deletion"]
    argv += ["--step", str(224 * 56), "--out", str(out), "--no-progress", "--device", "cpu"]
    _fails(capsys, [*argv, "--batch-size", "0"], "--batch-size")
    _fails(capsys, [*argv, "--units", "1"], "--units")
    assert main(argv) == 0
    assert "| UCAG(Grad-CAM) |" in capsys.readouterr().out
    # a different setting in the same folder: a usage error naming --out
    _fails(capsys, [*argv, "--batch-size", "8"], "--out", str(out), "other settings")


def test_tune_bad_options_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "tune"
    run = ["tune", "chelsea", "--out", str(out), "--no-progress"]
    _fails(capsys, [*run, "--units", "0"], "--units")
    _fails(capsys, [*run, "--units", "1"], "--units", "units 1")
    _fails(capsys, [*run, "--patch-fractions", "0"], "--patch-fractions")
    _fails(capsys, [*run, "--patch-fractions", "1.5"], "--patch-fractions")
    _fails(capsys, [*run, "--scales", "-1"], "--scales")
    _fails(capsys, [*run, "--scales", "1000"], "--scales", "32768")
    _fails(capsys, [*run, "--step", "0"], "--step")
    _fails(capsys, [*run, "--batch-size", "0"], "--batch-size")
    _fails(capsys, [*run, "--layer", "nope"], "--layer", "'nope'")
    assert not out.exists()
    _fails(
        capsys, ["tune", "chelsea", "--out", str(_photo(tmp_path / "photo.png")), "--no-progress"], "--out", "is a file"
    )


# --- images of every mode read as 8-bit RGB ----------------------------------------------


def _read(path):
    from ucag.cli import read_image

    name, rgb = read_image(path)
    assert name == path.stem and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    return rgb


def test_read_image_16_bit_keeps_its_gradient(tmp_path):
    """Pillow's convert("RGB") clips 16-bit values at 255 (a white image); divided by 257,
    the gradient stays a gradient."""
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (16, 1))
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    rgb = _read(path)
    assert rgb.shape == (16, 256, 3) and (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_array_equal(rgb[0, :, 0], np.arange(256))  # k * 257 -> k
    assert (rgb == 255).mean() < 0.01


def test_read_image_32_bit_int_and_float(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).round(), (8, 1))
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "int32.tif")
    assert Image.open(tmp_path / "int32.tif").mode == "I"
    np.testing.assert_array_equal(_read(tmp_path / "int32.tif")[0, :, 1], np.arange(256))
    Image.fromarray((ramp / 65535).astype(np.float32)).save(tmp_path / "unit.tif")
    assert Image.open(tmp_path / "unit.tif").mode == "F"
    assert np.abs(_read(tmp_path / "unit.tif")[0, :, 2].astype(int) - np.arange(256)).max() <= 1
    Image.fromarray((ramp / 65535 * 40 - 20).astype(np.float32)).save(tmp_path / "signed.tif")  # -20..20: stretched
    signed = _read(tmp_path / "signed.tif")[0, :, 0]
    assert signed[0] == 0 and signed[-1] == 255 and (np.diff(signed.astype(int)) >= 0).all()


def test_read_image_palette_with_and_without_transparency(tmp_path):
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    palette = [255, 0, 0, 0, 128, 0, 10, 20, 30] + [0] * (256 * 3 - 9)
    image = Image.fromarray(index, mode="P")
    image.putpalette(palette)
    image.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(
        _read(tmp_path / "palette.png"), [[[255, 0, 0], [0, 128, 0]], [[10, 20, 30], [0, 128, 0]]]
    )
    image.save(tmp_path / "clear.png", transparency=1)  # index 1 transparent -> white
    np.testing.assert_array_equal(
        _read(tmp_path / "clear.png"), [[[255, 0, 0], [255, 255, 255]], [[10, 20, 30], [255, 255, 255]]]
    )
    image.save(tmp_path / "clear.gif", transparency=0)
    np.testing.assert_array_equal(_read(tmp_path / "clear.gif")[0, 0], [255, 255, 255])


def test_read_image_rgba_and_grey_with_alpha_on_white(tmp_path):
    rgba = np.array([[[200, 10, 10, 255], [0, 0, 0, 0], [0, 0, 200, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    rgb = _read(tmp_path / "rgba.png").astype(int)
    np.testing.assert_array_equal(rgb[0, :2], [[200, 10, 10], [255, 255, 255]])
    assert np.abs(rgb[0, 2] - [127, 127, 227]).max() <= 1  # half-transparent blue on white
    la = np.array([[[60, 255], [60, 0]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(_read(tmp_path / "la.png"), [[[60, 60, 60], [255, 255, 255]]])


def test_read_image_grey_bilevel_and_cmyk(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (4, 1))
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(_read(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, axis=2))
    Image.fromarray(grey > 127).save(tmp_path / "bilevel.png")
    assert set(np.unique(_read(tmp_path / "bilevel.png"))) == {0, 255}
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "red.jpg", quality=95)
    assert Image.open(tmp_path / "red.jpg").mode == "CMYK"
    assert np.abs(_read(tmp_path / "red.jpg").astype(int) - [255, 0, 0]).max() <= 3
    # a profile Pillow cannot use: the plain conversion, no error
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "odd.jpg", quality=95, icc_profile=b"not a profile")
    assert np.abs(_read(tmp_path / "odd.jpg").astype(int) - [255, 0, 0]).max() <= 3


def test_read_image_applies_the_exif_orientation(tmp_path):
    image = Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: the camera's picture is 40 high, 20 wide
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert _read(tmp_path / "phone.jpg").shape == (40, 20, 3)


def test_read_image_bundled_photo_name():
    from ucag.cli import read_image

    name, rgb = read_image("coffee")
    assert name == "coffee" and rgb.dtype == np.uint8 and rgb.shape[2] == 3


# --- models from timm, torchvision and Hugging Face folders ------------------------------


@pytest.mark.pretrained  # a whole command run
def test_explain_with_timm_torchvision_and_hf_models(tmp_path, capsys):
    """--model timm:NAME / torchvision:NAME (random weights, or --weights) and hf:FOLDER; the
    target layer is the suggested one and said so on stderr; a ViT's patches are resized
    to its 224 x 224 input."""
    timm = pytest.importorskip("timm")
    transformers = pytest.importorskip("transformers")
    out = str(tmp_path / "out")
    torch.manual_seed(0)
    weights = tmp_path / "deit.pth"
    torch.save(timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict(), weights)
    assert (
        main(
            [
                "explain",
                "chelsea",
                "--model",
                "timm:deit_tiny_patch16_224",
                "--weights",
                str(weights),
                "--units",
                "2",
                "--out",
                out,
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        "ucag: target layer blocks.11.norm1 (LayerNorm, reshape_transform=TokenGrid(height=14, width=14, prefix_tokens=1))"
        in captured.err
    )
    assert (tmp_path / "out" / "chelsea_gradcam.png").exists()

    assert main(["explain", "coffee", "--model", "torchvision:resnet18", "--units", "2", "--out", out]) == 0
    assert "ucag: target layer layer4.1 (BasicBlock)" in capsys.readouterr().err

    folder = tmp_path / "hf-vit"
    config = transformers.ViTConfig(
        num_labels=5, hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=192
    )
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text('{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}')
    assert (
        main(["explain", "astronaut", "--model", f"hf:{folder}", "--units", "2", "--method", "gradcam++", "--out", out])
        == 0
    )
    captured = capsys.readouterr()
    assert "ucag: target layer vit.layers.1.layernorm_before" in captured.err and "class" in captured.out
    assert (tmp_path / "out" / "astronaut_gradcam++.png").exists()


def test_bad_library_models_are_one_line(tmp_path, capsys):
    pytest.importorskip("timm")
    run = ["explain", "chelsea", "--units", "2", "--out", str(tmp_path / "out")]
    assert "did you mean resnet50" in _fails(
        capsys, [*run, "--model", "timm:resnet5O"], "--model", "timm has no model 'resnet5O'"
    )
    _fails(capsys, [*run, "--model", "torchvision:vit_b_17"], "--model", "torchvision has no model 'vit_b_17'")
    _fails(capsys, [*run, "--model", f"hf:{tmp_path}"], "--model", "not a folder with a config.json")
    _fails(
        capsys,
        [*run, "--model", f"hf:{tmp_path}", "--weights", str(tmp_path / "w.pth")],
        "--weights",
        "loads the weights saved in its folder; give none",
    )
    _fails(capsys, [*run, "--model", "timm:resnet18", "--layer", "fc"], "--layer", "'fc'", "(1, 1000)")


@pytest.mark.pretrained  # a whole command run
def test_fold_option(tmp_path, capsys):
    run = ["explain", "chelsea", "--units", "2", "--out", str(tmp_path / "out")]
    _fails(capsys, [*run, "--fold", "hann"], "--fold", "invalid choice", "'box'")
    assert main([*run, "--fold", "cosine"]) == 0
    assert (tmp_path / "out" / "chelsea_gradcam.png").exists()

"""The ``ucag`` command line on the bundled model and photos."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ucag.cli import main


def test_explain_bundled_photo_writes_a_picture(tmp_path, capsys):
    assert main(["explain", "coffee", "--units", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "class 967 'espresso'" in out and "confidence" in out
    png = tmp_path / "coffee_gradcam.png"
    assert str(png) in out
    picture = np.asarray(Image.open(png).convert("RGB"))
    assert picture.shape[0] > 200 and picture.shape[1] > 2 * picture.shape[0]
    assert picture.std() > 20  # a real figure, not a blank canvas


def test_explain_with_a_signed_base_draws_signed_maps(tmp_path, capsys, monkeypatch):
    """A propagation method from the registry: its maps keep their sign and are drawn with
    the signed colour scale; a CAM's maps are not."""
    from ucag import viz

    drawn = []
    original = viz.show_signed
    monkeypatch.setattr(viz, "show_signed", lambda raw, *args, **kwargs: drawn.append(np.asarray(raw)) or original(raw, *args, **kwargs))
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
    argv = ["explain", str(photo), "--model", "torchvision.models:resnet18", "--weights", str(weights), "--layer", "layer4", "--units", "2", "--method", "gradcam++", "--out", str(tmp_path)]
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


def test_evaluate_with_global_view(tmp_path, capsys):
    argv = ["evaluate", "--samples", "--limit", "1", "--units", "2", "--global-view", "product", "--step", str(224 * 56)]
    argv += ["--metrics", "deletion", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    assert "| UCAG(Grad-CAM++) |" in capsys.readouterr().out
    import json

    assert json.loads((tmp_path / "config.json").read_text())["ucag_options"]["global_view"] == "product"

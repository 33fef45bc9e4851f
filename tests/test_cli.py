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

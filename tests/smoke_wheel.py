"""Smoke test of an installed ucag wheel, run from outside the source tree by `./dev wheel`
(arguments: the source tree, which must not be where ucag is imported from, and whether the
tch module must be used, "tch", or not, "portable"): wrap GradCAM on the bundled sample model,
explain one photo, check the map and that show_config names the expected path."""

import sys
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (the extension must also load when torch comes second)
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import ucag
from ucag.data import load_sample_model, sample_image

source_tree, expected_path = Path(sys.argv[1]).resolve(), sys.argv[2]
assert source_tree not in Path(ucag.__file__).resolve().parents, f"imported from the checkout: {ucag.__file__}"
print(f"ucag {ucag.__version__} from {Path(ucag.__file__).parent}")
ucag.show_config()
config = ucag.runtime.kernel_config()
assert config.tch_loaded == (expected_path == "tch"), config.tch_reason
assert config.paths["CPU float32/64"] == "portable"
assert config.paths["CUDA tensors"] == {"tch": "tch", "portable": "torch ops"}[expected_path], config.paths

sm = load_sample_model()
x = sm.preprocess(sample_image("chelsea").rgb)
cam = GradCAM(model=sm.model, target_layers=[sm.target_layer])
base = cam(input_tensor=x, targets=[ClassifierOutputTarget(285)])
with ucag.UCAG(cam) as explainer:
    maps = explainer(input_tensor=x, targets=[ClassifierOutputTarget(285)])
assert maps.shape == (1, 224, 224) and maps.dtype == np.float32, (maps.shape, maps.dtype)
assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
assert maps.max() > 0.9 and not np.allclose(maps, base, atol=1e-2)
# the cat's face, not the border, holds the top of the map
y, x_ = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
assert 20 < y < 204 and 20 < x_ < 204, (y, x_)
print(
    f"smoke test passed: UCAG(GradCAM) map {maps.shape}, peak at {(int(y), int(x_))}, {expected_path} kernels, torch {torch.__version__}"
)
sys.exit(0)

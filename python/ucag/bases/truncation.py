"""Backward truncation: stop the backward pass at the target layer.

Gradient-based CAMs (Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, ...) need only
the gradient of the target score with respect to the target layer's activations, yet a
plain ``loss.backward()`` continues down to the input and computes every weight gradient on
the way. [truncated_backward][ucag.bases.truncation.truncated_backward] makes the earliest target layer's output a fresh leaf
(a forward hook registered ahead of the base method's own hooks) and switches parameter
gradients off for the duration, so the backward pass covers only the layers above the
target layer. The base method's code is untouched and its maps are unchanged up to
floating-point summation order. [fast][ucag.bases.truncation.fast] offers the same for an
unwrapped CAM.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn


def _detached(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        if not output.is_floating_point():
            return output.detach()
        # A fresh leaf where the backward stops, then a copy of it: a leaf that requires grad
        # cannot take the in-place op (ReLU(inplace=True)) that often follows the layer.
        return output.detach().requires_grad_().clone()
    if isinstance(output, (tuple, list)):
        return type(output)(_detached(o) for o in output)
    return output


@contextlib.contextmanager
def truncated_backward(model: nn.Module, target_layers: Sequence[nn.Module]) -> Iterator[None]:
    """Stop the backward pass at the target layer for the duration of a ``with`` block.

    Within the block, every forward of ``model`` cuts the graph at the first target layer
    that runs, and no parameter requires grad. Hooks and flags are restored on exit, also
    when the block raises.

    Args:
        model: The model whose forwards are cut.
        target_layers: The target layers; the first of them that runs in a forward is where
            its graph is cut.

    Yields:
        None; the block runs with the graph cut.
    """
    cut_done = [False]

    def reset(module: nn.Module, args: Any) -> None:
        cut_done[0] = False

    def cut(module: nn.Module, args: Any, output: Any) -> Any:
        # Only the first target layer of a forward is cut: a later one still needs the
        # graph between the two for its own gradient.
        if cut_done[0]:
            return None
        cut_done[0] = True
        return _detached(output)

    flags = [(p, p.requires_grad) for p in model.parameters()]
    handles = [model.register_forward_pre_hook(reset)]
    # With no parameter requiring grad, older torch (2.4) runs nn.TransformerEncoderLayer
    # through its fused fast path, which never calls the submodules that carry the hooks.
    mha = torch.backends.mha
    fastpath = mha.get_fastpath_enabled()
    try:
        handles += [layer.register_forward_hook(cut, prepend=True) for layer in target_layers]
        for p, _ in flags:
            p.requires_grad_(False)
        mha.set_fastpath_enabled(False)
        yield
    finally:
        mha.set_fastpath_enabled(fastpath)
        for handle in handles:
            handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)


def can_truncate(cam: Any) -> bool:
    """Whether a pytorch-grad-cam object needs nothing below its target layers.

    Args:
        cam: A pytorch-grad-cam object.

    Returns:
        True for a ``BaseCAM`` that uses gradients, needs no input gradient (FullGrad does)
            and keeps the graph detached (ShapleyCAM's second-order pass does not).
    """
    return (
        hasattr(cam, "activations_and_grads")
        and bool(getattr(cam, "target_layers", None))
        and getattr(cam, "uses_gradients", False)
        and not getattr(cam, "compute_input_gradient", True)
        and getattr(cam, "detach", False)
        and "compute_cam_per_layer" not in type(cam).__dict__  # FullGrad's own pipeline
    )


class FastCAM:
    """A pytorch-grad-cam object whose calls stop the backward pass at the target layer.

    Same call interface and the same maps as the wrapped CAM (see
    [fast][ucag.bases.truncation.fast]). Every other attribute is the wrapped CAM's.

    Args:
        cam: A gradient-based pytorch-grad-cam object (GradCAM, GradCAMPlusPlus, XGradCAM,
            LayerCAM, ...).

    Raises:
        ValueError: When ``cam`` is not a gradient-based CAM that needs nothing below its
            target layers.
    """

    def __init__(self, cam: Any) -> None:
        if not can_truncate(cam):
            raise ValueError(
                f"cam: {type(cam).__name__} needs gradients below its target layers (or none at all); ucag.fast applies to gradient-based CAMs such as GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM"
            )
        self.cam = cam

    def __call__(
        self, input_tensor: torch.Tensor, targets: Any = None, aug_smooth: bool = False, eigen_smooth: bool = False
    ) -> Any:
        """The wrapped CAM's call, with the backward pass stopped at its target layer.

        Args:
            input_tensor: The images (B, C, H, W).
            targets: pytorch-grad-cam target objects, one per image; None explains the
                prediction.
            aug_smooth: grad-cam's test-time augmentation smoothing.
            eigen_smooth: grad-cam's first-principal-component smoothing.

        Returns:
            What the CAM returns: numpy float32 maps (B, H, W).
        """
        from ..layers import attached, checked_target_layers

        layers = self.cam.target_layers
        with (
            attached(layers),
            checked_target_layers(self.cam.model, layers),
            truncated_backward(self.cam.model, layers),
        ):
            return self.cam(
                input_tensor=input_tensor, targets=targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cam, name)

    def __enter__(self) -> FastCAM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cam.activations_and_grads.release()

    def __repr__(self) -> str:
        return f"ucag.fast({type(self.cam).__name__})"


def fast(cam: Any) -> FastCAM:
    """``cam`` with the backward pass stopped at its target layer.

    ``ucag.fast(GradCAM(...))`` is called exactly like the CAM and returns the same maps,
    about 3x faster on CPU.

    Args:
        cam: A gradient-based pytorch-grad-cam object (GradCAM, GradCAMPlusPlus, XGradCAM,
            LayerCAM, ...).

    Returns:
        The wrapped CAM; as a context manager it removes the CAM's hooks on exit.

    Raises:
        ValueError: When ``cam`` is not a gradient-based CAM that needs nothing below its
            target layers: it needs gradients below them (FullGrad, ShapleyCAM) or none at
            all (EigenCAM, ScoreCAM, ...).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from pytorch_grad_cam import GradCAM
        >>> import ucag
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                       nn.Flatten(), nn.Linear(4, 2))
        >>> with ucag.fast(GradCAM(model, target_layers=[model[0]])) as cam:
        ...     maps = cam(torch.rand(1, 3, 8, 8))
        >>> cam, maps.shape
        (ucag.fast(GradCAM), (1, 8, 8))
    """
    return FastCAM(cam)

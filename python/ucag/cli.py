"""The ``ucag`` command line.

``ucag explain IMAGE...`` explains images with a CAM method with and without UCAG and
writes, per image, one PNG with the photo, the base map and the UCAG map side by side.
``ucag demo`` runs ``explain`` on the bundled photos with the bundled sample model.
``ucag evaluate`` measures methods with and without UCAG over a dataset
([ucag.eval.evaluate][ucag.eval.runner.evaluate]); under ``torchrun`` it shards the dataset.
``ucag tune`` sweeps UCAG settings on the user's images ([ucag.eval.tune][ucag.eval.tuning.tune]).

The command line is the application on top of both layers: it uses the library and the
evaluation toolkit ([ucag.eval][ucag.eval]), and its method choices come from the registry.

Every failure prints one line ``ucag: error: ...`` naming the file or option and no
traceback (``UCAG_DEBUG=1`` shows it): exit status 2 for a usage error (a bad argument,
option, input file, model, layer or weights; [UsageError][ucag.cli.UsageError]), 1 for a
failure while running.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch
from torch import nn

import ucag

from ._inputs import logits_of
from .checks import quote_error
from .eval.measures import default_metrics, metric_names
from .eval.registry import (
    BASELINES,
    CONTROLS,
    METHODS,
    ONCE,
    VARIANTS,
    check_target_support,
    comparison_pairs,
    method,
    methods_of_kind,
)
from .eval.runner import TARGET_KINDS
from .grid import GridSpec
from .kernels import FOLD_WINDOWS
from .layers import attached
from .models import MODEL_SOURCES
from .options import DEFAULT_PRECISION, DEFAULT_SCALE, GlobalView, Precision, Weighting, choices
from .precision import compute_plan

if TYPE_CHECKING:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from .data import PreparedModel


def base_methods() -> tuple[str, ...]:
    """The methods ``explain``, ``demo`` and ``tune`` can put under UCAG.

    Returns:
        The names of every CAM or propagation base registered when the parser is built
            ([ucag.eval.registry][ucag.eval.registry]).

    Examples:
        >>> from ucag.cli import base_methods
        >>> "gradcam" in base_methods()
        True
    """
    return methods_of_kind("gradcam", "propagation")


#: The longest error line `main` prints (a state dict's key list can be very long).
MAX_ERROR_CHARS = 2000


class UsageError(ValueError):
    """A bad argument, option or input file.

    [main][ucag.cli.main] prints it as one line ``ucag: error: ...`` and exits 2; any other
    exception is a failure while running: one line with its type, exit 1. A `ValueError`.
    """


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are `UsageError` s, so that `main`
    prints them as one line (no usage block) and returns 2 instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _one_line(text: str) -> str:
    """``text`` on one line (a torch error spans several), at most MAX_ERROR_CHARS long."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def _as_option(err: Exception) -> str:
    """A library message ``name: what`` as ``--name: what`` (the option the user gave)."""
    text = str(err)
    name, sep, rest = text.partition(": ")
    if sep and name.isidentifier():
        return f"--{name.replace('_', '-')}: {rest}"
    return text


# --- argument types: argparse reports their errors as "argument --units: ..." -----------


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argument type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _whole_number(1)
_count = _whole_number(0)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction of the image side in (0, 1], got {text!r}")
    return value


# --- images -----------------------------------------------------------------------------


def read_image(path: str | Path) -> tuple[str, np.ndarray]:
    """An image file or a bundled photo name, read as 8-bit RGB.

    Every mode Pillow reads becomes 8-bit RGB: 16-bit greyscale ("I;16", and "I", as which
    Pillow opens 16-bit files) is divided by 257, not clipped at 255; float images ("F") in
    [0, 1] are scaled by 255, others stretched from their minimum to their maximum;
    transparency (RGBA, LA, PA, a palette or colour key with transparency) is composited
    onto white; CMYK goes through the file's ICC profile where it has one; the EXIF
    orientation is applied.

    Args:
        path: An image file, or the name of a bundled photo (`ucag.data.SAMPLE_PHOTOS`) where
            no such file exists.

    Returns:
        ``(name, rgb)``: the file's stem (or the photo's name) and a uint8 RGB array
            (H, W, 3).

    Raises:
        UsageError: A missing file, a folder, a file that is no image, a truncated or damaged
            image, or a colour mode that cannot be converted to RGB; the message names the
            file.
    """
    from .data import SAMPLE_PHOTOS, rgb8, sample_image

    text = str(path)
    p = Path(path)
    if not p.exists():
        if text in SAMPLE_PHOTOS:
            return text, sample_image(text).rgb
        raise UsageError(
            f"IMAGE: no such file {text!r}; give an image file or a bundled photo name ({', '.join(SAMPLE_PHOTOS)})"
        )
    if p.is_dir():
        raise UsageError(
            f"IMAGE: {text!r} is a folder, not an image; give the image files in it (e.g. {os.path.join(text, '*.jpg')})"
        )
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(p) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except UnidentifiedImageError:
        raise UsageError(
            f"IMAGE: {text!r} is not an image file Pillow can read (PNG, JPEG, TIFF, ...); check the file"
        ) from None
    except PermissionError:
        raise UsageError(f"IMAGE: {text!r} cannot be opened: permission denied") from None
    except Image.DecompressionBombError as err:
        raise UsageError(f"IMAGE: {text!r} is too large to read safely ({err})") from None
    except Exception as err:  # Pillow's decoders raise OSError, SyntaxError, ValueError...
        raise UsageError(
            f"IMAGE: {text!r} cannot be decoded: it is truncated or damaged ({quote_error(err)}); re-export or re-download it"
        ) from None
    try:
        rgb = rgb8(image)
    except ValueError as err:
        raise UsageError(
            f"IMAGE: {text!r} has colour mode {image.mode}, which cannot be converted to RGB ({err}); save it as RGB"
        ) from None
    return p.stem, rgb


def _check_images(paths: Sequence[str]) -> None:
    """Read every image once before any work, so a bad file fails the command at once."""
    for path in paths:
        read_image(path)


# --- models -----------------------------------------------------------------------------


def _submodule(model: nn.Module, name: str, what: str) -> nn.Module:
    """``model``'s layer ``name`` (a submodule, or a call site such as ``_swish@2``:
    `ucag.models.layer_by_name`) or a `UsageError` for ``--layer``."""
    from .models import layer_by_name

    try:
        return layer_by_name(model, name)
    except ValueError as err:
        raise UsageError(f"--layer: {what}: {_one_line(str(err)).removeprefix('layer: ')}") from None


def _load_user_model(
    spec: str, weights: str | None, layer: str | None, mean: Sequence[float] | None, std: Sequence[float] | None
) -> PreparedModel:
    """``--model`` through `ucag.models.load_model` (its errors become ``--option:``
    usage errors), its suggested target layer reported on stderr; square inputs only."""
    from .models import load_model

    try:
        prepared = load_model(spec, weights, layer=layer, mean=mean, std=std)
    except ImportError as err:  # names the spec and the extra to install
        raise UsageError(f"--model: {_one_line(str(err))}") from None
    except (ValueError, TypeError) as err:
        message = _one_line(str(err))
        argument = message.split(":", 1)[0]
        if argument in ("model", "weights", "layer", "mean", "std"):
            raise UsageError(f"--{message}") from None
        raise UsageError(f"--model: {spec}: {message}") from None
    if prepared.suggestion is not None:
        print(f"ucag: target layer {prepared.suggestion} (--layer picks another)", file=sys.stderr)
    return prepared


def _load_model(
    args: argparse.Namespace, needs_feature_map: bool, device: torch.device | str = "cpu", target_kind: str = "class"
) -> tuple[PreparedModel, int]:
    """The model the options name (``--model``/``--weights``/``--layer``/``--mean``/``--std``,
    else the sample model, whose target layer ``--layer`` may change) and its number of
    classes, checked with one forward pass of a blank image before any method runs:
    the model returns (batch, classes) logits (one logit per image for ``target_kind``
    "binary"; the sample model is then its binary or multi-label head) and, with
    ``needs_feature_map`` (a CAM method), the target layer runs once and outputs a
    (batch, channels, height, width) map."""
    from .data import default_class_names, load_sample_model

    if args.model:
        sm = _load_user_model(args.model, args.weights, args.layer, args.mean, args.std)
        sm.model.to(device)
        what = args.model
    else:
        for option in ("weights", "mean", "std"):
            if getattr(args, option) is not None:
                raise UsageError(
                    f"--{option}: applies to --model only (the sample model has its own weights and normalisation); add --model or drop --{option}"
                )
        head = {"binary": "binary", "multilabel": "multilabel"}.get(target_kind, "classifier")
        sm = load_sample_model(device, head=head)  # type: ignore[arg-type]
        what = "the sample model (EfficientNet-Lite0)" if head == "classifier" else f"the sample model's {head} head"
        if args.layer:
            sm = dataclasses.replace(sm, target_layer=_submodule(sm.model, args.layer, what))
    outputs: list[Any] = []
    hook = sm.target_layer.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    parameter = next(sm.model.parameters(), None)
    blank = torch.zeros(
        1, 3, sm.input_size, sm.input_size, device=parameter.device if parameter is not None else device
    )
    try:
        with torch.no_grad(), attached([sm.target_layer]):  # a tap (--layer F.relu@121) reads its call
            output = sm.model(blank)
    except Exception as err:
        if not args.model:
            raise
        raise UsageError(
            f"--model: {what} fails on a 1x3x{sm.input_size}x{sm.input_size} image ({quote_error(err)}); the command line feeds RGB images of that size"
        ) from None
    finally:
        hook.remove()
    try:
        logits = logits_of(output)
    except TypeError:
        raise UsageError(
            f"--model: {what} returns a {type(output).__name__}; the command line needs (batch, classes) logits (a tensor, a tuple starting with them, or a ModelOutput)"
        ) from None
    if target_kind == "binary":
        if not (logits.dim() == 1 or (logits.dim() == 2 and logits.shape[1] == 1)):
            raise UsageError(
                f"--target-kind: binary needs one logit per image; {what} returns logits of shape {tuple(logits.shape)}"
            )
        logits = logits.reshape(-1, 1)
    if logits.dim() != 2:
        raise UsageError(
            f"--model: {what} returns logits of shape {tuple(logits.shape)}; the command line needs (batch, classes) logits"
        )
    layer = args.layer or "the target layer"
    if needs_feature_map:
        if not outputs:
            raise UsageError(
                f"--layer: {layer!r} is not run by the forward pass of {what}; give a layer the model runs"
            )
        if len(outputs) > 1:
            raise UsageError(
                f"--layer: {layer!r} runs {len(outputs)} times per forward pass of {what} (a shared module); give a layer that runs once"
            )
        feature_map = (
            sm.reshape_transform(outputs[0])
            if sm.reshape_transform is not None and isinstance(outputs[0], torch.Tensor)
            else outputs[0]
        )
        if not isinstance(feature_map, torch.Tensor) or feature_map.dim() != 4:
            got = (
                f"shape {tuple(outputs[0].shape)}"
                if isinstance(outputs[0], torch.Tensor)
                else f"a {type(outputs[0]).__name__}"
            )
            raise UsageError(
                f"--layer: {layer!r} outputs {got}; CAM methods need a (batch, channels, height, width) feature map, e.g. the last convolutional block"
            )
    classes = int(logits.shape[1])
    if len(sm.class_names) != classes and not (target_kind == "binary" and len(sm.class_names) == 2):
        sm.class_names = default_class_names(classes)
    return sm, classes


def _check_units(units: int, size: int) -> None:
    try:
        GridSpec(units).grid((size, size))
    except ValueError as err:
        raise UsageError(
            f"--units: {units} does not cut a {size}x{size} image into patches ({err}); use 2 or more"
        ) from None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {str(out)!r} is a file; give a folder")


def _make_out(out: Path) -> None:
    _check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out: cannot create the folder {str(out)!r} ({err.strerror or quote_error(err)})") from None


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device: {text!r} is not a device; e.g. cpu or cuda:0") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device: {text!r} needs CUDA, which is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device: {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    return device


def explain(args: argparse.Namespace) -> int:
    """Run ``ucag explain``: one PNG per image with the photo, the base map and the UCAG map.

    The target is the model's top class unless ``--target`` names one. Signed maps
    (``--postprocess none``) are drawn red for the class and blue against it.

    Args:
        args: The options [main][ucag.cli.main] parsed for the ``explain`` subcommand.

    Returns:
        The exit status, 0.

    Raises:
        UsageError: A bad image file, an ``--out`` folder that is a file or cannot be created,
            a model or ``--layer`` that the method cannot use, a ``--target`` that is not a
            class of the model, or ``--units`` that do not fit the model's input size.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no window
    import matplotlib.pyplot as plt

    from . import viz

    spec = method(args.method)
    method_name = spec.display_name
    out_dir = Path(args.out)
    _check_out(out_dir)
    _check_images(args.images)
    sm, classes = _load_model(args, needs_feature_map=spec.kind == "gradcam")
    if args.target is not None and not 0 <= args.target < classes:
        raise UsageError(
            f"--target: {args.target} is not a class of the model; give a class index from 0 to {classes - 1} (the model has {classes} outputs)"
        )
    _check_units(args.units, sm.input_size)
    compute = _compute_options(args, sm.model)
    _make_out(out_dir)
    with (
        attached([sm.target_layer]),  # the base map's own CAM call reads a tap's call site too
        spec.build(sm.model, sm.target_layer) as cam,
        ucag.UCAG(
            cam,
            units=args.units,
            batch_size=args.batch_size,
            progress=args.progress,
            **_fold_option(args),
            **compute,
        ) as explainer,
    ):
        for path in args.images:
            name, rgb = read_image(path)
            x = sm.preprocess(rgb)
            with torch.no_grad():
                probs = logits_of(sm.model(x)).softmax(1)[0]
            target = int(probs.argmax()) if args.target is None else args.target
            start = time.perf_counter()
            base_map = cam(input_tensor=x, targets=[_classifier_target(target)])[0]
            base_time = time.perf_counter() - start
            start = time.perf_counter()
            explanation = explainer.explain(x, [target])
            ucag_time = time.perf_counter() - start
            ucag_map = explanation.saliency[0].cpu().numpy()
            photo = (sm.denormalize(x)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            label = sm.class_names[target] if target < len(sm.class_names) else str(target)
            title = f"{name}: class {target} '{label}', confidence {float(probs[target]):.3f}"
            panels = {method_name: base_map, f"UCAG({method_name})": ucag_map}
            if explainer.postprocess == "none":  # signed maps: red for the class, blue against
                fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.6), layout="constrained")
                axes[0].imshow(photo)
                axes[0].set_axis_off()
                axes[0].set_title("image")
                for ax, (panel, signed) in zip(axes[1:], panels.items(), strict=True):
                    viz.show_signed(signed, photo, ax=ax, title=panel)
            else:
                fig = viz.compare([photo], {panel: [m] for panel, m in panels.items()})
            fig.suptitle(title)
            path_png = out_dir / f"{name}_{args.method}.png"
            fig.savefig(path_png, dpi=90)
            plt.close(fig)
            print(f"{title}; {method_name} {base_time:.1f} s, UCAG {ucag_time:.1f} s -> {path_png}")
    return 0


def _classifier_target(index: int) -> ClassifierOutputTarget:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return ClassifierOutputTarget(index)


def demo(args: argparse.Namespace) -> int:
    """Run ``ucag demo``: [explain][ucag.cli.explain] on the bundled photos ``--photos``.

    Args:
        args: The options [main][ucag.cli.main] parsed for the ``demo`` subcommand.

    Returns:
        The exit status, 0.

    Raises:
        UsageError: As [explain][ucag.cli.explain].
    """
    args.images = args.photos
    return explain(args)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help=f"the model: {MODEL_SOURCES} (a local save_pretrained folder) or an importable factory 'package.module:function'; random weights unless --weights (default: the sample model)",
    )
    p.add_argument("--weights", help="local weights file for --model (a state dict from torch.save, or .safetensors)")
    p.add_argument(
        "--layer",
        help="dotted name of the CAM target layer (default: the one ucag.layer_suggestion finds, e.g. layer4.2 for a ResNet; head_activation in the sample EfficientNet-Lite0)",
    )
    p.add_argument(
        "--mean",
        type=_finite_float,
        nargs=3,
        help="input normalisation mean for --model (default: its library's, else ImageNet's)",
    )
    p.add_argument(
        "--std",
        type=_positive_float,
        nargs=3,
        help="input normalisation std for --model (default: its library's, else ImageNet's)",
    )


def _add_fold_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fold",
        choices=list(FOLD_WINDOWS),
        help="the fold's window: box is the paper's fold, linear and cosine taper the patches so no seams show (default: ucag.UCAG's)",
    )


def _fold_option(args: argparse.Namespace) -> dict[str, Any]:
    """``{"fold": ...}`` when ``--fold`` was given (else UCAG's own default applies)."""
    return {"fold": args.fold} if args.fold else {}


def _add_compute_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--precision",
        choices=choices(Precision),
        default=DEFAULT_PRECISION,
        help=f"arithmetic of {what}: bf16 with channels-last ran 3-3.7x faster on a CPU with bfloat16, its maps close to fp32 (docs/algorithm.md §10); fp16 on CUDA only (default {DEFAULT_PRECISION})",
    )
    p.add_argument(
        "--channels-last",
        choices=["auto", "true", "false"],
        default="auto",
        help="hand the model channels-last inputs; auto: where --precision is lowered and the model has convolutions (default auto)",
    )


def _compute_options(args: argparse.Namespace, model: nn.Module) -> dict[str, Any]:
    """``precision`` and ``channels_last`` from ``--precision`` and ``--channels-last``,
    checked against the model's device (fp16 is refused on the CPU)."""
    options: dict[str, Any] = {
        "precision": args.precision,
        "channels_last": {"auto": "auto", "true": True, "false": False}[args.channels_last],
    }
    try:
        compute_plan(model, **options)
    except ValueError as err:
        raise UsageError(_as_option(err)) from None
    return options


def _add_explain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="gradcam", choices=base_methods(), help="base method (default gradcam)")
    p.add_argument("--units", type=_positive_int, default=6, help="patches per axis (default 6)")
    p.add_argument(
        "--target", type=int, default=None, help="class index to explain, 0..classes-1 (default: the prediction)"
    )
    _add_fold_option(p)
    p.add_argument("--batch-size", type=_positive_int, default=16, help="patches per forward/backward (default 16)")
    p.add_argument("--out", default="out", help="folder for the PNGs (default ./out)")
    p.add_argument("--progress", action="store_true", help="show a progress bar per image")
    _add_compute_options(p, "UCAG's patch passes")
    _add_model_options(p)


#: What ``ucag evaluate --samples`` compares (the methods of the paper's Table 1 and two more).
SAMPLE_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam")


def _init_distributed() -> torch.device:
    """Join the process group a launcher such as torchrun describes (gloo on CPU, NCCL on
    GPU) and pick this process's device."""
    dist = torch.distributed
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.device(f"cuda:{local_rank}" if cuda else "cpu")


def evaluate(args: argparse.Namespace) -> int:
    """Run ``ucag evaluate``: [ucag.eval.evaluate][ucag.eval.runner.evaluate] over a dataset.

    Every option is checked before anything is written to ``--out``, so a refused command
    leaves the folder free for the corrected one. Without ``--device`` it joins the process
    group a launcher such as ``torchrun`` describes and shards the dataset; rank 0 prints the
    summary table.

    Args:
        args: The options [main][ucag.cli.main] parsed for the ``evaluate`` subcommand.

    Returns:
        The exit status, 0.

    Raises:
        UsageError: Methods, variants, baselines or a target kind that do not go together, a
            dataset that cannot be opened or holds no samples, a bad ``--device``, ``--out``
            or model, or the runner refusing its arguments (e.g. ``--out`` holds a run with
            other settings).
    """
    from .eval.datasets import open_dataset
    from .eval.runner import evaluate as run_evaluation

    # every check before the runner writes anything to --out: a refused command must
    # leave the folder free for the corrected one
    methods = args.methods or (SAMPLE_METHODS if args.samples else ("gradcam",))
    try:
        comparison_pairs(methods, args.variants, args.baselines)
    except ValueError as err:
        raise UsageError(_as_option(err)) from None
    _check_out(Path(args.out))
    spec = "samples" if args.samples else args.dataset
    try:
        dataset = open_dataset(spec)
    except (ValueError, OSError) as err:
        text = str(err)
        raise UsageError(f"--{text}" if text.startswith("dataset ") else f"--dataset: {text}") from None
    if len(dataset) == 0:
        raise UsageError(f"--dataset: {spec!r} holds no samples")
    device = _device(args.device) if args.device else _init_distributed()
    # the propagation methods and the Sobel control (the image only) do without the layer
    uses_layer = [m for m in (*methods, *(b for b in args.baselines if b in ONCE)) if METHODS[m].uses_layer]
    try:
        check_target_support(comparison_pairs(methods, args.variants, args.baselines), args.target_kind)
    except ValueError as err:
        raise UsageError(f"{_as_option(err)} (with --target-kind {args.target_kind})") from None
    sm, _ = _load_model(args, needs_feature_map=bool(uses_layer), device=device, target_kind=args.target_kind)
    _check_units(args.units, sm.input_size)
    compute = _compute_options(args, sm.model)
    options: dict[str, Any] = {"units": args.units, "batch_size": args.batch_size, **_fold_option(args)}
    if args.global_view:
        options["global_view"] = args.global_view
    try:
        summary = run_evaluation(
            sm.model,
            sm.target_layer,
            dataset,
            args.out,
            methods=methods,
            variants=args.variants,
            baselines=args.baselines,
            metrics=args.metrics,
            mean=sm.mean,
            std=sm.std,
            input_size=sm.input_size,
            ucag_options=options,
            step=args.step,
            metric_batch_size=args.metric_batch_size,
            limit=args.limit,
            progress=not args.no_progress,
            target_kind=args.target_kind,
            workers=args.workers,
            **compute,
        )
    except ValueError as err:  # the runner's own checks of its arguments ("out: ... holds a run with other settings"); failures while measuring are RuntimeErrors
        raise UsageError(_as_option(err)) from None
    if torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        # every rank finishes before any tears down: a rank that destroyed its group and
        # exited while another still held the connection aborted at exit now and then
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if rank != 0:
            return 0
    print(summary.markdown())
    print(f"per-image results, summary and curves in {summary.out}/")
    return 0


def tune(args: argparse.Namespace) -> int:
    """Run ``ucag tune``: [ucag.eval.tune][ucag.eval.tuning.tune] on the user's images.

    Writes ``tune.md`` (the table), ``tune.csv`` (deletion and insertion per setting and
    image) and ``tune.png`` (the plot) to ``--out`` and prints the table.

    Args:
        args: The options [main][ucag.cli.main] parsed for the ``tune`` subcommand.

    Returns:
        The exit status, 0.

    Raises:
        UsageError: A bad image file, an ``--out`` folder that is a file or cannot be created,
            a bad model, or a setting (units, patch fraction, scale) that does not fit the
            model's input size.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no window
    import matplotlib.pyplot as plt

    from .eval.tuning import Setting
    from .eval.tuning import tune as run_tune

    spec = method(args.method)
    out = Path(args.out)
    _check_out(out)
    names, photos = zip(*(read_image(path) for path in args.images), strict=True)
    sm, _ = _load_model(args, needs_feature_map=spec.kind == "gradcam")
    compute = _compute_options(args, sm.model)
    size = (sm.input_size, sm.input_size)
    for units in args.units:
        for fraction in args.patch_fractions:
            for scale in args.scales:
                try:
                    Setting(units, fraction, scale).grid(size)
                except ValueError as err:
                    raise UsageError(
                        f"--units/--patch-fractions/--scales: units {units}, patch fraction {fraction:g}, scale {scale:g} do not fit a {size[0]}x{size[1]} image ({err})"
                    ) from None
    _make_out(out)
    x = torch.cat([sm.preprocess(rgb) for rgb in photos])
    space = {
        "units": args.units,
        "patch_fraction": args.patch_fractions,
        "scale": args.scales,
        "weighting": args.weightings,
        "global_view": [None if v == "none" else v for v in args.global_views],
    }
    with spec.build(sm.model, sm.target_layer) as cam:
        result = run_tune(
            sm.model,
            cam,
            x,
            space=space,
            objective=args.objective,
            step=args.step,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            **compute,
        )
    (out / "tune.md").write_text(result.markdown(), encoding="utf-8")
    with open(out / "tune.csv", "w", encoding="utf-8") as f:
        f.write("units,patch_fraction,scale,weighting,global_view,image,deletion,insertion\n")
        for r in result.rows:
            s = r.setting
            for name, d, i in zip(names, r.deletion, r.insertion, strict=True):
                f.write(
                    f"{s.units},{s.patch_fraction!r},{s.scale!r},{s.weighting},{s.global_view or ''},{name},{d!r},{i!r}\n"
                )
    fig = result.plot()
    fig.savefig(out / "tune.png", dpi=100)
    plt.close(fig)
    print(result.markdown())
    print(f"table, per-image scores and plot in {out}/ (tune.md, tune.csv, tune.png)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``ucag`` command: parse the arguments and run the subcommand.

    Every failure prints one line ``ucag: error: ...`` on stderr and no traceback
    (``UCAG_DEBUG=1`` re-raises a failure while running, to show it).

    Args:
        argv: The arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 2 for a usage error
            ([UsageError][ucag.cli.UsageError]), 1 for a failure while running, 130 when
            interrupted.

    Examples:
        >>> from ucag.cli import main
        >>> main(["explain"])  # prints "ucag: error: the following arguments are required: IMAGE ..." on stderr
        2
    """
    from .data import SAMPLE_PHOTOS

    parser = _Parser(prog="ucag", description="UCAG saliency maps from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain", help="explain images (files or bundled photo names) with and without UCAG")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_explain_options(p)
    p.set_defaults(run=explain)
    p = sub.add_parser("demo", help="run explain on the bundled photos with the sample model")
    p.add_argument("--photos", nargs="+", default=["chelsea", "coffee", "voc"], choices=SAMPLE_PHOTOS)
    _add_explain_options(p)
    p.set_defaults(run=demo)
    p = sub.add_parser(
        "evaluate", help="measure methods with and without UCAG over a dataset (resumable; torchrun shards it)"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", action="store_true", help="the bundled photos with the sample model")
    source.add_argument(
        "--dataset",
        help="samples | imagenet:ROOT[:LABELS] | voc2007:ROOT | coco2014:ROOT:ANNOTATIONS | imagenet-seg:PATH",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=[m for m in METHODS if m not in CONTROLS],
        help=f"default: {' '.join(SAMPLE_METHODS)} with --samples, else gradcam",
    )
    p.add_argument("--variants", nargs="+", default=["base", "ucag"], choices=list(VARIANTS), help="default: base ucag")
    p.add_argument(
        "--baselines",
        nargs="*",
        default=[],
        choices=BASELINES,
        help="also run these: peers around each method (upscale; sess: SESS's 12 scales; sess-matched: SESS on UCAG's own grid; refinecam: 3 resolutions), "
        "cameras, and the floors random (Random-CAM) and sobel (edges)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=list(default_metrics()),
        choices=metric_names(),
        help=f"registered metrics (ucag.eval.measures); default: {' '.join(default_metrics())}",
    )
    p.add_argument(
        "--target-kind",
        default="class",
        choices=list(TARGET_KINDS),
        help="how the model's outputs are read: class (softmax logits), binary (one logit; the sample model's cat-vs-rest head), "
        "multilabel (independent sigmoids; the sample model's super-class head); default class",
    )
    p.add_argument("--units", type=_positive_int, default=6, help="UCAG patches per axis (default 6)")
    p.add_argument(
        "--batch-size", type=_positive_int, default=16, help="UCAG patches per forward/backward (default 16)"
    )
    p.add_argument(
        "--global-view", choices=choices(GlobalView), help="fuse UCAG with the full-image map (beyond the paper)"
    )
    _add_fold_option(p)
    p.add_argument(
        "--metric-batch-size",
        type=_positive_int,
        default=8,
        help="perturbed images per forward in the metrics (default 8)",
    )
    p.add_argument(
        "--step", type=_positive_int, default=None, help="pixels per deletion/insertion step (default 8 * width)"
    )
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate the first N samples only")
    p.add_argument("--out", default="evaluation", help="output folder; rerun to resume (default ./evaluation)")
    p.add_argument("--device", help="e.g. cpu or cuda:0 (default: cuda:LOCAL_RANK when available)")
    p.add_argument(
        "--workers",
        type=_count,
        default=None,
        help="processes that read and decode the photos ahead (default: CPU cores - 1, at most 4; 0: none)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_compute_options(p, "UCAG's patch passes and the metrics' forwards")
    _add_model_options(p)
    p.set_defaults(run=evaluate)
    p = sub.add_parser("tune", help="find UCAG settings for a model on your images (deletion/insertion per setting)")
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        default=list(SAMPLE_PHOTOS[:4]),
        help="files or bundled photo names (default: four bundled photos)",
    )
    p.add_argument("--method", default="gradcam", choices=base_methods(), help="base method (default gradcam)")
    p.add_argument(
        "--units", type=_positive_int, nargs="+", default=[4, 6, 8], help="patches per axis to try (default 4 6 8)"
    )
    p.add_argument(
        "--patch-fractions", type=_fraction, nargs="+", default=[124 / 224, 0.65], help="patch side / image side to try"
    )
    p.add_argument(
        "--scales",
        type=_positive_float,
        nargs="+",
        default=[DEFAULT_SCALE],
        help=f"upsampling factors to try (default {DEFAULT_SCALE})",
    )
    p.add_argument("--weightings", nargs="+", default=["exp", "uniform"], choices=choices(Weighting))
    p.add_argument("--global-views", nargs="+", default=["none", "product"], choices=["none", *choices(GlobalView)])
    p.add_argument("--objective", default="insertion-deletion", choices=["insertion-deletion", "insertion", "deletion"])
    p.add_argument(
        "--step", type=_positive_int, default=None, help="pixels per deletion/insertion step (default 8 * width)"
    )
    p.add_argument("--batch-size", type=_positive_int, default=16, help="patches per forward/backward (default 16)")
    p.add_argument("--out", default="tune", help="output folder (default ./tune)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_compute_options(p, "UCAG's patch passes and the metrics' forwards")
    _add_model_options(p)
    p.set_defaults(run=tune)
    try:
        args = parser.parse_args(argv)
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except UsageError as err:
        _error(str(err))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as err:
        if os.environ.get("UCAG_DEBUG"):  # a developer asks for the traceback
            raise
        _error(f"{type(err).__name__}: {err}".rstrip(": "))
        return 1


def _error(message: str) -> None:
    """The one line every failure prints: ``ucag: error: ...`` on stderr."""
    print(f"ucag: error: {_one_line(message)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""What ucag needs to know about a classifier's architecture: its input size, its CAM layer.

- :class:`LogitsOnly` (defined with :func:`logits_of` in ``ucag._call``, used by every entry
  point): a model that returns a tuple, a dict or a Hugging Face ``ModelOutput`` seen as
  one that returns its logits, for code that calls it directly (a plain grad-cam object).
- :func:`model_normalization`: the mean and std its inputs are normalised with, where the
  model says (timm's ``pretrained_cfg``, a Hugging Face folder's preprocessor config).
- :func:`model_input_size`: the one input size a fixed-resolution model (ViT, DeiT, Swin…)
  accepts, read from timm's ``pretrained_cfg``, a torchvision ViT's ``image_size`` or a
  Hugging Face config; None for models that take any size.
- :func:`layer_suggestion` / :func:`suggest_target_layer`: the layer a CAM should use and
  why, with the ``reshape_transform`` a transformer's tokens need (:class:`TokenGrid`,
  :class:`ChannelsLast`). Families are recognised by structure, from one traced forward
  pass, not by model names (docs/algorithm.md §2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import torch
from torch import nn

from ._call import LogitsOnly, eval_mode, logits_of, model_device

#: How the suggested layer lays out its output: "NCHW" (a CNN's feature map), "tokens"
#: ((B, T, C), a ViT's), "NHWC" (timm's Swin stages).
Layout: TypeAlias = Literal["NCHW", "tokens", "NHWC"]

#: Activation modules: a feature map taken after one of these is "after its nonlinearity".
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.Mish, nn.PReLU, nn.SELU, nn.CELU, nn.Sigmoid, nn.Tanh, nn.Hardsigmoid)
_HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)


def _config_size(value: Any) -> tuple[int, int] | None:
    """An input size as configs write it: 224, (224, 224) or (3, 224, 224)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) in (2, 3) and all(isinstance(v, int) and v > 0 for v in value):
        return (int(value[-2]), int(value[-1]))
    return None


def model_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The (H, W) a fixed-resolution model accepts, or None when it takes any size.

    Known where the model says so: timm's ``pretrained_cfg`` with ``fixed_input_size``
    (ViT, DeiT, Swin, … unless built with ``dynamic_img_size``), a torchvision
    ``VisionTransformer``'s ``image_size``, a Hugging Face model whose config has an
    ``image_size`` and whose embeddings add learnt absolute position embeddings (ViT, DeiT,
    BEiT …; Swin and ConvNeXt, which take any size, have none)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, Mapping) and cfg.get("fixed_input_size") and not getattr(model, "dynamic_img_size", False):
        size = _config_size(cfg.get("input_size"))
        if size:
            return size
    image_size = getattr(model, "image_size", None)
    if isinstance(image_size, int) and isinstance(getattr(model, "class_token", None), nn.Parameter):
        return (image_size, image_size)  # torchvision's VisionTransformer asserts this size
    config = getattr(model, "config", None)
    if config is not None and _config_size(getattr(config, "image_size", None)):
        for name, param in model.named_parameters():
            if name.endswith("position_embeddings") and param.dim() == 3:
                return _config_size(config.image_size)
    return None


def trace_size(model: nn.Module) -> tuple[int, int]:
    """The input size to trace ``model`` at: the one it requires, else the one its
    configuration names (timm, Hugging Face), else 224 x 224."""
    fixed = model_input_size(model)
    if fixed:
        return fixed
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, Mapping) and _config_size(cfg.get("input_size")):
        return _config_size(cfg.get("input_size"))  # type: ignore[return-value]
    config = getattr(model, "config", None)
    size = _config_size(getattr(config, "image_size", None)) if config is not None else None
    return size or (224, 224)


def _triple(values: Any) -> tuple[float, float, float] | None:
    if isinstance(values, (tuple, list)) and len(values) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return (float(values[0]), float(values[1]), float(values[2]))
    return None


def model_normalization(model: nn.Module) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """The (mean, std) a model's inputs are normalised with, where the model says: timm's
    ``pretrained_cfg`` (which :func:`ucag.data.load_sample_model` also sets), or the
    ``preprocessor_config.json`` (``image_mean``, ``image_std``) in the folder a Hugging
    Face model was loaded from. None when it does not say — never a guess."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, Mapping):
        mean, std = _triple(cfg.get("mean")), _triple(cfg.get("std"))
        if mean and std:
            return mean, std
    folder = getattr(getattr(model, "config", None), "_name_or_path", None)
    if isinstance(folder, str) and folder:
        path = Path(folder) / "preprocessor_config.json"
        if path.is_file():
            try:
                config = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            mean, std = _triple(config.get("image_mean")), _triple(config.get("image_std"))
            if mean and std:
                return mean, std
    return None


@dataclass(frozen=True)
class TokenGrid:
    """grad-cam ``reshape_transform`` for a ViT-style (B, T, C) layer: drop the
    ``prefix_tokens`` (class, distillation, register tokens) and lay the rest out as a
    (B, C, height, width) map (another size of the same aspect ratio when the model ran on
    another input size: :meth:`grid_for`)."""

    height: int
    width: int
    prefix_tokens: int = 0

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() != 3:
            raise ValueError(f"reshape_transform: expected (B, T, C) tokens, got {tuple(tensor.shape)}")
        height, width = self.grid_for(int(tensor.shape[1]))
        grid = tensor[:, self.prefix_tokens :, :].reshape(tensor.shape[0], height, width, tensor.shape[2])
        return grid.permute(0, 3, 1, 2)

    def grid_for(self, tokens: int) -> tuple[int, int]:
        """The (h, w) grid of ``tokens`` tokens: (height, width), or for a model that takes
        other input sizes (a Swin that pads), the grid of the same aspect ratio that holds
        them all; ValueError when none does."""
        cells = tokens - self.prefix_tokens
        if cells == self.height * self.width:
            return self.height, self.width
        g = math.gcd(self.height, self.width)
        ah, aw = self.height // g, self.width // g
        k = math.isqrt(max(cells, 0) // (ah * aw))
        if cells > 0 and k * k * ah * aw == cells:
            return k * ah, k * aw
        raise ValueError(
            f"reshape_transform: {tokens} tokens are not {self.prefix_tokens} prefix tokens and a {ah}:{aw} grid (built for {self.height}x{self.width}); "
            "the model ran on an input of another shape than the one the transform was built for (pass a scaled_size of that shape)"
        )


@dataclass(frozen=True)
class ChannelsLast:
    """grad-cam ``reshape_transform`` for a (B, H, W, C) layer (timm's Swin): to (B, C, H, W)."""

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() != 4:
            raise ValueError(f"reshape_transform: expected (B, H, W, C), got {tuple(tensor.shape)}")
        return tensor.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class LayerSuggestion:
    """A CAM target layer for a model, and why.

    ``name``: its dotted name in ``model.named_modules()``; ``layer``: the module;
    ``reshape_transform``: what grad-cam needs to turn its output into (B, C, h, w) maps
    (None for a CNN's feature map); ``layout``: its output's layout; ``feature_size``: the
    (h, w) of its map at ``input_size``; ``reason``: one sentence on why this layer."""

    name: str
    layer: nn.Module
    reshape_transform: TokenGrid | ChannelsLast | None
    layout: Layout
    feature_size: tuple[int, int]
    input_size: tuple[int, int]
    reason: str

    def __str__(self) -> str:
        transform = f", reshape_transform={self.reshape_transform}" if self.reshape_transform else ""
        return f"{self.name} ({type(self.layer).__name__}{transform}): {self.reason}"


@dataclass
class _Call:
    """One module call seen by the trace: in order of completion."""

    name: str
    module: nn.Module
    output: Any
    passthrough: bool  # returned its own input unchanged (nn.Identity & co.)


def _trace(model: nn.Module, size: tuple[int, int]) -> list[_Call]:
    """Every module call of one forward pass of a zero image of ``size``, in the order the
    calls finished; the model's state is restored (modes, flags, hooks)."""
    calls: list[_Call] = []
    names = {id(m): n for n, m in model.named_modules()}

    def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        # an in-place activation also returns its input, but changed
        unchanged = bool(inputs) and output is inputs[0] and not isinstance(module, _ACTIVATIONS)
        calls.append(_Call(names.get(id(module), "?"), module, output, unchanged))

    x = torch.zeros(1, 3, *size, device=model_device(model))
    with eval_mode(model), torch.no_grad():
        for module in model.modules():
            module.register_forward_hook(record)
        try:
            model(x)
        except Exception as err:
            raise ValueError(f"model: cannot trace a forward pass on a 1x3x{size[0]}x{size[1]} image to find its layers ({type(err).__name__}: {err})") from err
    return calls


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _is_layer_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or "LayerNorm" in type(module).__name__


def _inside(name: str, parent: str) -> bool:
    return parent == "" or name == parent or name.startswith(parent + ".")


def layer_suggestion(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> LayerSuggestion:
    """The layer a CAM should explain ``model`` at, found from one forward pass of a blank
    image (at ``input_size``, default :func:`trace_size`):

    - **Transformers** (ViT, DeiT, Swin, … — models with attention blocks): the first
      LayerNorm of the last attention block (timm's ``blocks[-1].norm1``, torchvision's
      ``encoder.layers[-1].ln_1``, Hugging Face's ``layernorm_before``), whose tokens
      still carry the spatial information the class token gathers; with a
      :class:`TokenGrid` that drops the prefix tokens, or :class:`ChannelsLast` for (B, H, W, C)
      stages.
    - **CNNs** (ResNet, EfficientNet, ConvNeXt, MobileNet, VGG …): the module that outputs
      the last spatial feature map, i.e. *after* the activation that follows the last
      convolution or normalisation (the map a pre-activation BatchNorm gives can reverse
      what UCAG shows). Among modules that return that same tensor, the outermost block
      that runs once (``layer4[-1]`` rather than ``layer4`` or its shared ReLU).

    ValueError when the forward pass fails or no spatial layer exists.
    """
    size = trace_size(model) if input_size is None else (_config_size(input_size) or _bad_size(input_size))
    calls = _trace(model, size)
    counts: dict[int, int] = {}
    for call in calls:
        counts[id(call.module)] = counts.get(id(call.module), 0) + 1
    attention = [c for c in calls if _is_attention(c.module) and c.module is not model]
    tokens = _transformer_layer(model, calls, attention, counts, size) if attention else None
    # CNNs with attention modules of their own (channel attention, an attention-pool head)
    # keep NCHW maps: the CNN rule
    return tokens or _cnn_layer(model, calls, counts, size)


def _bad_size(value: Any) -> tuple[int, int]:
    raise ValueError(f"input_size: expected a positive int or an (h, w) pair, got {value!r}")


def _cnn_layer(model: nn.Module, calls: list[_Call], counts: dict[int, int], size: tuple[int, int]) -> LayerSuggestion:
    spatial = [
        c
        for c in calls
        if c.module is not model
        and not c.passthrough
        and not isinstance(c.module, _HEAD_POOLS)  # the classifier head's pooling, not a feature layer
        and isinstance(c.output, torch.Tensor)
        and c.output.dim() == 4
        and c.output.shape[-2] * c.output.shape[-1] > 1
    ]
    if not spatial:
        raise ValueError(f"model: {type(model).__name__} has no layer with a spatial (B, C, H, W) output at {size[0]}x{size[1]}; give the target layer yourself")
    last = spatial[-1].output
    same = [c for c in calls if c.output is last and c.module is not model and not c.passthrough]
    # the outermost block that runs once; plain containers name no block of their own
    blocks = [c for c in same if counts[id(c.module)] == 1 and type(c.module) not in (nn.Sequential, nn.ModuleList)]
    chosen = min(blocks or same, key=lambda c: c.name.count("."))
    # the last leaf module to write that tensor (in-place ops such as ReLU(inplace=True)
    # and `out += identity` write into their input's tensor)
    producer = next((c.module for c in reversed(same) if next(c.module.children(), None) is None), None)
    after_activation = isinstance(producer, _ACTIVATIONS)
    _, channels, h, w = last.shape
    if after_activation or not isinstance(producer, (*_NORMS, nn.Conv2d)):
        why = "after its activation" if after_activation else "the end of the network's last block"
        reason = f"the last spatial feature map of {type(model).__name__} ({channels} x {h} x {w} at {size[0]}x{size[1]} input), {why}"
    else:
        reason = (
            f"the last spatial feature map of {type(model).__name__} ({channels} x {h} x {w} at {size[0]}x{size[1]} input); no activation module follows it, "
            "so the model applies its activation functionally and the map is taken before it"
        )
    return LayerSuggestion(chosen.name, chosen.module, None, "NCHW", (int(h), int(w)), size, reason)


def resolution_layers(model: nn.Module, target_layer: nn.Module | None = None, count: int = 3, input_size: int | tuple[int, int] | None = None) -> list[LayerSuggestion]:
    """One CNN layer per spatial resolution, for multi-layer CAMs (RefineCAM): the layers
    that end the last ``count`` resolutions of the network, coarsest (``target_layer``,
    default :func:`layer_suggestion`'s) last, found from one traced forward pass of a blank
    image (at ``input_size``, default :func:`trace_size`).

    For each resolution before the target layer's, the chosen layer is the last module of
    the *shallowest* depth (fewest dots in its name) whose output has that resolution —
    the end of a stage (``layer3`` of a ResNet, ``blocks.4`` of a timm EfficientNet,
    ``features.29`` of a VGG), not the expansion convolution of the next stage's first
    block, which still runs at that resolution — then, among the modules returning that
    same tensor, the outermost block that runs once (``layer3[-1]`` rather than the
    ``layer3`` container), as :func:`layer_suggestion` chooses. Fewer layers come back when
    the network has fewer resolutions. ValueError for a target layer whose output is not a
    (B, C, H, W) map of the forward pass (a transformer's tokens: give the layers yourself).
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count: expected a positive number of resolutions, got {count!r}")
    size = trace_size(model) if input_size is None else (_config_size(input_size) or _bad_size(input_size))
    if target_layer is None:
        suggestion = layer_suggestion(model, size)
        if suggestion.layout != "NCHW":
            raise ValueError(f"model: {type(model).__name__} is a transformer ({suggestion.layout} layer {suggestion.name!r}); its tokens have one resolution: give the layers yourself")
        target_layer = suggestion.layer
    calls = _trace(model, size)
    counts: dict[int, int] = {}
    for call in calls:
        counts[id(call.module)] = counts.get(id(call.module), 0) + 1
    end = next((i for i, c in enumerate(calls) if c.module is target_layer), None)
    if end is None or not isinstance(calls[end].output, torch.Tensor) or calls[end].output.dim() != 4:
        raise ValueError(f"target_layer: {type(target_layer).__name__} gives no (B, C, H, W) feature map in a forward pass of {type(model).__name__} at {size[0]}x{size[1]}")
    spatial = [
        c
        for c in calls[: end + 1]
        if c.module is not model
        and not c.passthrough
        and not isinstance(c.module, _HEAD_POOLS)
        and isinstance(c.output, torch.Tensor)
        and c.output.dim() == 4
        and c.output.shape[-2] * c.output.shape[-1] > 1
    ]
    # the resolutions the network steps down through: a map larger than one already reached
    # (a 'same' padding before a strided convolution) starts no stage
    resolutions: list[tuple[int, int]] = []
    for c in spatial:
        h, w = (int(v) for v in c.output.shape[-2:])
        if not resolutions or h * w < resolutions[-1][0] * resolutions[-1][1]:
            resolutions.append((h, w))
    target_resolution = tuple(int(v) for v in calls[end].output.shape[-2:])
    earlier = [r for r in resolutions if r != target_resolution][-(count - 1) :] if count > 1 else []
    names = {id(m): n for n, m in model.named_modules()}
    chosen: list[LayerSuggestion] = []
    for resolution in earlier:
        at = [c for c in spatial if tuple(c.output.shape[-2:]) == resolution]
        depth = min(c.name.count(".") for c in at)
        last = [c for c in at if c.name.count(".") == depth][-1].output
        same = [c for c in calls if c.output is last and c.module is not model and not c.passthrough]
        blocks = [c for c in same if counts[id(c.module)] == 1 and type(c.module) not in (nn.Sequential, nn.ModuleList)]
        shallowest = min(c.name.count(".") for c in blocks or same)
        pick = [c for c in blocks or same if c.name.count(".") == shallowest][-1]  # after an in-place activation
        _, channels, h, w = last.shape
        chosen.append(LayerSuggestion(pick.name, pick.module, None, "NCHW", (int(h), int(w)), size, f"the end of the {h} x {w} stage ({channels} channels at {size[0]}x{size[1]} input)"))
    _, channels, h, w = calls[end].output.shape
    chosen.append(LayerSuggestion(names.get(id(target_layer), "?"), target_layer, None, "NCHW", (int(h), int(w)), size, f"the target layer ({channels} x {h} x {w} at {size[0]}x{size[1]} input)"))
    return chosen


def _transformer_layer(model: nn.Module, calls: list[_Call], attention: list[_Call], counts: dict[int, int], size: tuple[int, int]) -> LayerSuggestion | None:
    """The LayerNorm before the last attention block's attention, when its output is tokens
    ((B, T, C), or (B, H, W, C) normalised over C); None otherwise."""
    outermost = [c for c in attention if not any(o.name != c.name and _inside(c.name, o.name) for o in attention)]
    last_attention = outermost[-1]
    block_name = last_attention.name.rpartition(".")[0]
    if not block_name:
        return None  # attention directly in the model: a head, not a block
    block = model.get_submodule(block_name)
    norms = [c for c in calls if _is_layer_norm(c.module) and _inside(c.name, block_name) and not _inside(c.name, last_attention.name) and counts[id(c.module)] == 1]
    chosen = norms[0] if norms else next(c for c in calls if c.module is block)
    output = chosen.output
    if not isinstance(output, torch.Tensor):
        return None
    where = f"the {'first LayerNorm' if norms else 'output'} of the last attention block {block_name!r}"
    if output.dim() == 4:
        if not norms or output.shape[-1] == output.shape[1]:
            return None  # an NCHW map (a hybrid CNN's block): the CNN rule
        _, h, w, _ = output.shape
        return LayerSuggestion(chosen.name, chosen.module, ChannelsLast(), "NHWC", (int(h), int(w)), size, f"{where}: a {h} x {w} grid of tokens (B, H, W, C) at {size[0]}x{size[1]} input")
    if output.dim() != 3:
        return None
    try:
        prefix, h, w = _token_grid(int(output.shape[1]), size)
    except ValueError:
        return None
    extra = f", after {prefix} prefix token{'s' if prefix > 1 else ''} (class/distillation/register)" if prefix else ""
    return LayerSuggestion(
        chosen.name,
        chosen.module,
        TokenGrid(h, w, prefix),
        "tokens",
        (h, w),
        size,
        f"{where}: its tokens form a {h} x {w} grid{extra} at {size[0]}x{size[1]} input, and the class prediction still reads from all of them",
    )


def _token_grid(tokens: int, size: tuple[int, int]) -> tuple[int, int, int]:
    """(prefix, h, w) with ``tokens = prefix + h * w`` and h : w the image's aspect ratio,
    for the fewest prefix tokens (at most 16)."""
    H, W = size
    g = math.gcd(H, W)
    ah, aw = H // g, W // g
    for prefix in range(min(tokens, 17)):
        cells = tokens - prefix
        k = math.isqrt(cells // (ah * aw)) if cells % (ah * aw) == 0 else 0
        if k and k * k * ah * aw == cells:
            return prefix, k * ah, k * aw
    raise ValueError(f"model: cannot lay {tokens} tokens out as a grid with the image's {H}:{W} aspect ratio; give the target layer and reshape_transform yourself")


def reshape_transform_for(model: nn.Module, layers: Sequence[nn.Module]) -> TokenGrid | ChannelsLast | None:
    """The ``reshape_transform`` grad-cam needs for ``layers`` of ``model``: None for CNN
    feature maps (and for models without attention blocks, which are not traced),
    :class:`TokenGrid` for (B, T, C) tokens, :class:`ChannelsLast` for a LayerNorm's
    (B, H, W, C) output. ValueError when the layers need different ones."""
    if not any(_is_attention(m) for m in model.modules()):
        return None
    size = trace_size(model)
    outputs = {id(c.module): c.output for c in _trace(model, size)}
    found: set[TokenGrid | ChannelsLast | None] = set()
    for layer in layers:
        output = outputs.get(id(layer))
        if not isinstance(output, torch.Tensor):
            found.add(None)
        elif output.dim() == 3:
            prefix, h, w = _token_grid(int(output.shape[1]), size)
            found.add(TokenGrid(h, w, prefix))
        elif output.dim() == 4 and _is_layer_norm(layer) and output.shape[-1] != output.shape[1]:
            found.add(ChannelsLast())
        else:
            found.add(None)
    if len(found) > 1:
        raise ValueError(f"target_layers: the layers need different reshape transforms ({sorted(map(str, found))}); give the CAM one reshape_transform yourself")
    return found.pop() if found else None


def suggest_target_layer(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> nn.Module:
    """The CAM target layer :func:`layer_suggestion` finds, as a module to pass to a CAM:
    ``GradCAM(model, [ucag.suggest_target_layer(model)])``. For a transformer, grad-cam also
    needs ``reshape_transform=ucag.layer_suggestion(model).reshape_transform`` —
    :class:`ucag.UCAG` adds it by itself when the CAM has none."""
    return layer_suggestion(model, input_size).layer


__all__ = [
    "ChannelsLast",
    "LayerSuggestion",
    "LogitsOnly",
    "TokenGrid",
    "layer_suggestion",
    "logits_of",
    "model_input_size",
    "model_normalization",
    "reshape_transform_for",
    "resolution_layers",
    "suggest_target_layer",
    "trace_size",
]

"""What ucag needs to know about a classifier's architecture: its input size, its CAM layer.

- `LogitsOnly` (defined with `logits_of` in ``ucag._inputs``, used by every entry
  point): a model that returns a tuple, a dict or a Hugging Face ``ModelOutput`` seen as
  one that returns its logits, for code that calls it directly (a plain grad-cam object).
- [model_normalization][ucag.models.model_normalization]: the mean and std its inputs are
  normalised with, where the model says (timm's ``pretrained_cfg``, a Hugging Face folder's
  preprocessor config).
- [model_input_size][ucag.models.model_input_size]: the one input size a fixed-resolution
  model (ViT, DeiT, Swin…) accepts, read from timm's ``pretrained_cfg``, a torchvision ViT's
  ``image_size`` or a Hugging Face config; None for models that take any size.
- [layer_suggestion][ucag.models.layer_suggestion] /
  [suggest_target_layer][ucag.models.suggest_target_layer]: the layer a CAM should use and
  why, with the ``reshape_transform`` a transformer's tokens need
  ([TokenGrid][ucag.models.TokenGrid], [ChannelsLast][ucag.models.ChannelsLast]). Families
  are recognised by structure, from one traced forward pass, not by model names
  (docs/algorithm.md §2).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ._inputs import LogitsOnly, logits_of
from ._model_state import eval_mode, model_device
from .checks import is_int, is_real, positive_int, quote_error
from .extras import require
from .layers import CallSite, SiteKind, Tap, attached, layer_name

if TYPE_CHECKING:
    from .data import PreparedModel

#: How the suggested layer lays out its output: "NCHW" (a CNN's feature map), "tokens"
#: ((B, T, C), a ViT's), "NHWC" (timm's Swin stages).
Layout: TypeAlias = Literal["NCHW", "tokens", "NHWC"]

#: Activation modules: a feature map taken after one of these is "after its nonlinearity".
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.PReLU,
    nn.SELU,
    nn.CELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardsigmoid,
)
#: Activations a model may apply as a function (``F.relu(x)``, ``x.relu()``) rather than
#: through a module: the trace records their calls, a `Tap` can read their output.
_ACTIVATION_FUNCTIONS: dict[Callable[..., Any], str] = {
    function: name
    for name, function in (
        ("torch.nn.functional.relu", F.relu),
        ("torch.nn.functional.relu_", F.relu_),
        ("torch.relu", torch.relu),
        ("torch.relu_", torch.relu_),
        ("Tensor.relu", torch.Tensor.relu),
        ("Tensor.relu_", torch.Tensor.relu_),
        ("torch.nn.functional.relu6", F.relu6),
        ("torch.nn.functional.hardtanh", F.hardtanh),
        ("torch.nn.functional.silu", F.silu),
        ("torch.nn.functional.gelu", F.gelu),
        ("torch.nn.functional.hardswish", F.hardswish),
        ("torch.nn.functional.leaky_relu", F.leaky_relu),
        ("torch.nn.functional.elu", F.elu),
        ("torch.nn.functional.mish", F.mish),
        ("torch.nn.functional.selu", F.selu),
        ("torch.nn.functional.celu", F.celu),
        ("torch.sigmoid", torch.sigmoid),
        ("Tensor.sigmoid", torch.Tensor.sigmoid),
        ("torch.tanh", torch.tanh),
        ("Tensor.tanh", torch.Tensor.tanh),
    )
}
_HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)


def _config_size(value: Any) -> tuple[int, int] | None:
    """An input size as configs write it: 224, (224, 224) or (3, 224, 224)."""
    if is_int(value) and value > 0:
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) in (2, 3) and all(isinstance(v, int) and v > 0 for v in value):
        return (int(value[-2]), int(value[-1]))
    return None


def model_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The (H, W) a fixed-resolution model accepts, or None when it takes any size.

    Known where the model says so: timm's ``pretrained_cfg`` with ``fixed_input_size``
    (ViT, DeiT, Swin, … unless built with ``dynamic_img_size``), a torchvision
    ``VisionTransformer``'s ``image_size``, a Hugging Face model whose config has an
    ``image_size`` (or whose ``vision_config`` has one) and whose embeddings add learnt
    absolute position embeddings (ViT, DeiT, BEiT, CLIP, SigLIP …; Swin and ConvNeXt, which
    take any size, have none).

    Args:
        model: The model.

    Returns:
        The (H, W) the model requires, or None.

    Examples:
        >>> from torch import nn
        >>> from ucag.models import model_input_size
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3))
        >>> print(model_input_size(model))
        None
        >>> model.pretrained_cfg = {"fixed_input_size": True, "input_size": (3, 384, 384)}  # as timm's ViTs
        >>> model_input_size(model)
        (384, 384)
    """
    if getattr(model, "dynamic_img_size", False):
        return None
    # timm's patch embedding of the image says the size it asserts (built with img_size=, it
    # differs from the config's); later stages' embeddings name their feature maps' sizes
    for embedding in model.children():
        reads_image = getattr(getattr(embedding, "proj", None), "in_channels", None) == 3
        if reads_image and getattr(embedding, "strict_img_size", False) is True:
            strict = _config_size(getattr(embedding, "img_size", None))
            if strict:
                return strict
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, Mapping) and cfg.get("fixed_input_size"):
        size = _config_size(cfg.get("input_size"))
        if size:
            return size
    image_size = getattr(model, "image_size", None)
    if isinstance(image_size, int) and isinstance(getattr(model, "class_token", None), nn.Parameter):
        return (image_size, image_size)  # torchvision's VisionTransformer asserts this size
    size = _hf_image_size(model)
    if size is not None:
        for name, param in model.named_parameters():
            # learnt absolute positions: ViT's (1, T, C) tensor, Perceiver's (T, C), CLIP's and SigLIP's embedding table
            if (name.endswith("position_embeddings") and param.dim() in (2, 3)) or (
                name.endswith("position_embedding.weight") and param.dim() == 2
            ):
                return size
    return None


def _hf_image_size(model: nn.Module) -> tuple[int, int] | None:
    """The ``image_size`` of a Hugging Face model's config (or of its ``vision_config``)."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    vision = getattr(config, "vision_config", None)
    return _config_size(getattr(config, "image_size", None)) or (
        _config_size(getattr(vision, "image_size", None)) if vision is not None else None
    )


def model_size_multiple(model: nn.Module) -> int:
    """The number a model's input sides must be multiples of, where the model says so.

    A timm patch embedding (a ``dynamic_img_pad`` attribute, or a class named
    ``…PatchEmbed``) that neither pads nor takes one size only asserts that the sides are
    multiples of its ``patch_size`` (EVA, DINOv3, NaFlexViT, Qwen3-ViT, Gemma 4 ViT …).

    Args:
        model: The model.

    Returns:
        The least common multiple of such patch sizes; 1 for every other model.
    """
    multiple = 1
    for module in model.modules():
        pads = getattr(module, "dynamic_img_pad", None)
        embeds = pads is False or (pads is None and type(module).__name__.endswith("PatchEmbed"))
        if embeds and not getattr(module, "strict_img_size", False):
            patch = _config_size(getattr(module, "patch_size", None))
            if patch:
                multiple = math.lcm(multiple, *patch)
    return multiple


def trace_size(model: nn.Module) -> tuple[int, int]:
    """The input size to trace ``model`` at.

    Args:
        model: The model.

    Returns:
        The (H, W) it requires ([model_input_size][ucag.models.model_input_size]), else the
            one its configuration names (timm, Hugging Face), else (224, 224).

    Examples:
        >>> from torch import nn
        >>> from ucag.models import trace_size
        >>> trace_size(nn.Sequential(nn.Conv2d(3, 8, 3)))
        (224, 224)
    """
    fixed = model_input_size(model)
    if fixed:
        return fixed
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, Mapping) and _config_size(cfg.get("input_size")):
        return _config_size(cfg.get("input_size"))  # type: ignore[return-value]
    return _hf_image_size(model) or (224, 224)


def _triple(values: Any) -> tuple[float, float, float] | None:
    if isinstance(values, (tuple, list)) and len(values) == 3 and all(is_real(v) for v in values):
        return (float(values[0]), float(values[1]), float(values[2]))
    return None


def model_normalization(model: nn.Module) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """The (mean, std) a model's inputs are normalised with, where the model says.

    The model says in timm's ``pretrained_cfg`` (which
    [load_sample_model][ucag.data.load_sample_model] also sets), or in the
    ``preprocessor_config.json`` (``image_mean``, ``image_std``) in the folder a Hugging Face
    model was loaded from.

    Args:
        model: The model.

    Returns:
        ``(mean, std)``, three values each (R, G, B); None when the model does not say —
            never a guess.

    Examples:
        >>> from torch import nn
        >>> from ucag.models import model_normalization
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3))
        >>> print(model_normalization(model))
        None
        >>> model.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        >>> model_normalization(model)
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    """
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
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            mean, std = _triple(config.get("image_mean")), _triple(config.get("image_std"))
            if mean and std:
                return mean, std
    return None


@dataclass(frozen=True)
class TokenGrid:
    """grad-cam ``reshape_transform`` for a ViT-style (B, T, C) layer.

    It drops the ``prefix_tokens`` (class, distillation, register tokens) and lays the rest
    out as a (B, C, height, width) map (another size of the same aspect ratio when the model
    ran on another input size: [grid_for][ucag.models.TokenGrid.grid_for]).

    Attributes:
        height: The rows of the token grid at the input size the transform was built for.
        width: The columns of the token grid at that size.
        prefix_tokens: The tokens before the grid (class, distillation, register tokens).

    Examples:
        >>> import torch
        >>> from ucag.models import TokenGrid
        >>> transform = TokenGrid(14, 14, prefix_tokens=1)  # a ViT-B/16 at 224 x 224
        >>> transform(torch.zeros(2, 1 + 14 * 14, 768)).shape
        torch.Size([2, 768, 14, 14])
    """

    height: int
    width: int
    prefix_tokens: int = 0

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tokens as a map.

        Args:
            tensor: (B, T, C) tokens.

        Returns:
            The grid tokens as a (B, C, h, w) map, (h, w) from [grid_for][ucag.models.TokenGrid.grid_for].

        Raises:
            ValueError: ``tensor`` is not (B, T, C), or its tokens form no grid of the aspect
                ratio.
        """
        if tensor.dim() != 3:
            raise ValueError(f"reshape_transform: expected (B, T, C) tokens, got {tuple(tensor.shape)}")
        height, width = self.grid_for(int(tensor.shape[1]))
        grid = tensor[:, self.prefix_tokens :, :].reshape(tensor.shape[0], height, width, tensor.shape[2])
        return grid.permute(0, 3, 1, 2)

    def grid_for(self, tokens: int) -> tuple[int, int]:
        """The (h, w) grid that ``tokens`` tokens form after the prefix tokens.

        Args:
            tokens: The number of tokens, prefix tokens included.

        Returns:
            (height, width), or for a model that takes other input sizes (a Swin that pads),
                the grid of the same aspect ratio that holds them all.

        Raises:
            ValueError: No grid of that aspect ratio holds the tokens.

        Examples:
            >>> from ucag.models import TokenGrid
            >>> TokenGrid(2, 3, prefix_tokens=1).grid_for(1 + 8 * 12)
            (8, 12)
        """
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
    """grad-cam ``reshape_transform`` for a (B, H, W, C) layer (timm's Swin): to (B, C, H, W).

    Examples:
        >>> import torch
        >>> from ucag.models import ChannelsLast
        >>> ChannelsLast()(torch.zeros(2, 7, 7, 768)).shape
        torch.Size([2, 768, 7, 7])
    """

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        """The channels-last map as a channels-first one.

        Args:
            tensor: A (B, H, W, C) map.

        Returns:
            The (B, C, H, W) map (a view of ``tensor``).

        Raises:
            ValueError: ``tensor`` is not four-dimensional.
        """
        if tensor.dim() != 4:
            raise ValueError(f"reshape_transform: expected (B, H, W, C), got {tuple(tensor.shape)}")
        return tensor.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class LayerSuggestion:
    """A CAM target layer for a model, and why.

    [layer_suggestion][ucag.models.layer_suggestion] and
    [resolution_layers][ucag.models.resolution_layers] return them; ``str()`` gives the name,
    the layer's type and the reason on one line.

    Attributes:
        name: The layer's dotted name in ``model.named_modules()``, or for a
            [Tap][ucag.layers.Tap] its call site's (``"_swish@2"``;
            [layer_by_name][ucag.models.layer_by_name] reads both).
        layer: The module (or tap).
        reshape_transform: What grad-cam needs to turn its output into (B, C, h, w) maps
            (None for a CNN's feature map).
        layout: Its output's layout: ``"NCHW"`` (a CNN's feature map), ``"tokens"``
            ((B, T, C), a ViT's) or ``"NHWC"`` (timm's Swin stages).
        feature_size: The (h, w) of its map at ``input_size``.
        input_size: The (H, W) of the traced input.
        reason: One sentence on why this layer.
    """

    name: str
    layer: nn.Module
    reshape_transform: TokenGrid | ChannelsLast | None
    layout: Layout
    feature_size: tuple[int, int]
    input_size: tuple[int, int]
    reason: str

    def attached(self) -> contextlib.AbstractContextManager[None]:
        """A block in which a plain CAM on ``layer`` works.

        A [Tap][ucag.layers.Tap] is attached for the block, any other layer needs nothing
        (ucag's own calls do this by themselves).

        Returns:
            A context manager: ``with suggestion.attached(), GradCAM(model, [suggestion.layer]) as cam:``.
        """
        return attached([self.layer])

    def __str__(self) -> str:
        transform = f", reshape_transform={self.reshape_transform}" if self.reshape_transform else ""
        return f"{self.name} ({type(self.layer).__name__}{transform}): {self.reason}"


#: The batch the trace runs: 2, so that a layer whose first dimension is not the batch shows.
TRACE_BATCH = 2


@dataclass
class _Call:
    """One call seen by the trace, in order of completion: a module's, or (``module`` None)
    an activation function's (`_ACTIVATION_FUNCTIONS`)."""

    name: str
    module: nn.Module | None
    output: Any
    passthrough: bool  # returned its own input unchanged (nn.Identity & co.)
    occurrence: int = 0  # among the calls of the same module or function in the forward
    function: Callable[..., Any] | None = None
    first_input: Any = None
    inputs: tuple[Any, ...] = ()  # every tensor input, positional or by keyword


class _ActivationRecorder(TorchFunctionMode):
    """Records the calls of activation functions into the trace."""

    def __init__(self, calls: list[_Call]) -> None:
        super().__init__()
        self.calls = calls
        self.seen: dict[Any, int] = {}

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        output = func(*args, **(kwargs or {}))
        try:
            name = _ACTIVATION_FUNCTIONS.get(func)
        except TypeError:  # an unhashable callable
            name = None
        if name is not None:
            occurrence = self.seen.get(func, 0)
            self.seen[func] = occurrence + 1
            self.calls.append(_Call(name, None, output, False, occurrence, func, args[0] if args else None))
        return output


def _trace(model: nn.Module, size: tuple[int, int]) -> list[_Call]:
    """Every module call and activation-function call of one forward pass of a batch of
    `TRACE_BATCH` zero images of ``size``, in the order the calls finished; the
    model's state is restored (modes, flags, hooks)."""
    calls: list[_Call] = []
    names = {id(m): n for n, m in model.named_modules()}
    seen: dict[int, int] = {}

    def record(module: nn.Module, inputs: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        # the first input, positional or (Hugging Face layers) by keyword
        first = inputs[0] if inputs else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
        # an in-place activation also returns its input, but changed
        unchanged = first is not None and output is first and not isinstance(module, _ACTIVATIONS)
        occurrence = seen.get(id(module), 0)
        seen[id(module)] = occurrence + 1
        tensors = tuple(v for v in (*inputs, *kwargs.values()) if isinstance(v, torch.Tensor))
        calls.append(_Call(names.get(id(module), "?"), module, output, unchanged, occurrence, None, first, tensors))

    x = torch.zeros(TRACE_BATCH, 3, *size, device=model_device(model))
    with eval_mode(model), torch.no_grad():
        for module in model.modules():
            module.register_forward_hook(record, with_kwargs=True)
        try:
            with _ActivationRecorder(calls):
                model(x)
        except Exception as err:
            raise ValueError(
                f"model: cannot trace a forward pass on a {TRACE_BATCH}x3x{size[0]}x{size[1]} batch to find its layers ({type(err).__name__}: {err})"
            ) from err
    return calls


_ATTENTION_NAME = re.compile(r"attention|attn", re.IGNORECASE)
_CONTAINER_NAME = re.compile(r"(block|layer|stage|encoder)s?$", re.IGNORECASE)


def _is_attention(module: nn.Module) -> bool:
    """An attention module (nn.MultiheadAttention, a class named ...Attention or ...Attn),
    not a block or stage that contains one."""
    name = type(module).__name__
    return isinstance(module, nn.MultiheadAttention) or (
        bool(_ATTENTION_NAME.search(name)) and not _CONTAINER_NAME.search(name)
    )


_LAYER_NORM_NAME = re.compile(r"LayerNorm|RMSNorm|RmsNorm")
_NORM_NAME = re.compile(r"Norm(?!al)")


def _is_layer_norm(module: nn.Module) -> bool:
    """A norm over the channels of each token: LayerNorm, RMSNorm and the libraries' own."""
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or bool(_LAYER_NORM_NAME.search(type(module).__name__))


def _inside(name: str, parent: str) -> bool:
    return parent == "" or name == parent or name.startswith(parent + ".")


def layer_suggestion(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> LayerSuggestion:
    """The layer a CAM should explain ``model`` at, and why.

    It is found from one forward pass of a blank batch (at ``input_size``, default
    [trace_size][ucag.models.trace_size]; docs/algorithm.md §8.1).

    Every suggestion runs exactly once per forward and keeps the batch as its first
    dimension; its output is a spatial map (B, C, H, W), a channels-last map (B, H, W, C)
    or tokens (B, T, C) that form a grid over the image after some prefix tokens.

    - **Transformers and token MLPs** (ViT, DeiT, Swin, CaiT, MLP-Mixer, … — repeated
      blocks that read and return a grid of patch tokens): the tokens entering the last
      such block (class-attention blocks, which return the class token alone, do not
      count). In a pre-norm block, whose first norm reads the block's input, that is the
      norm's output (timm's ``blocks[-1].norm1``, torchvision's ``encoder.layers[-1].ln_1``,
      Hugging Face's ``layernorm_before``); in a post-norm block, the previous block's
      output (or a [Tap][ucag.layers.Tap] on the block's input). Never a module inside
      attention. With a [TokenGrid][ucag.models.TokenGrid] that drops the prefix tokens, or
      [ChannelsLast][ucag.models.ChannelsLast] for (B, H, W, C) stages.
    - **CNNs** (ResNet, EfficientNet, ConvNeXt, MobileNet, VGG, DenseNet …): the last
      spatial feature map, *after* the activation that follows the last convolution or
      normalisation (the map a pre-activation BatchNorm gives can reverse what UCAG shows).
      Among modules that return that tensor, the outermost block that runs once
      (``layer4[-1]`` rather than ``layer4`` or its shared ReLU). When no module that runs
      once outputs it — a shared activation module (efficientnet-lite-pytorch's ``_swish``,
      called after the stem and after the head) or an activation applied as a function
      (torchvision DenseNet's final ``F.relu``) — the layer is a [Tap][ucag.layers.Tap]
      on that one call, which ucag attaches for its calls
      ([LayerSuggestion.attached][ucag.models.LayerSuggestion.attached] for a plain CAM). A
      stage that keeps its maps channels-last (B, H, W, C) gets
      [ChannelsLast][ucag.models.ChannelsLast].

    A hybrid model gets its last token block's layer unless convolutions compute a feature
    map after that block (a convolutional head): then the CNN rule's map, the one closest to
    the classifier.

    Args:
        model: The classifier.
        input_size: The side, or (H, W), of the blank batch to trace (default
            [trace_size][ucag.models.trace_size]).

    Returns:
        The layer, its name, its ``reshape_transform`` and layout, and the reason.

    Raises:
        ValueError: The forward pass fails, no layer qualifies, or ``input_size`` is not a
            positive int or an (h, w) pair.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
        ... )
        >>> from ucag.models import layer_suggestion
        >>> print(layer_suggestion(model))
        2 (ReLU): the last spatial feature map of Sequential (8 x 111 x 111 at 224x224 input), after its activation
    """
    size = trace_size(model) if input_size is None else (_config_size(input_size) or _bad_size(input_size))
    calls = _trace(model, size)
    counts = _call_counts(calls)
    position = {id(c): i for i, c in enumerate(calls)}
    tokens = _token_layer(model, calls, counts, size, position)
    try:
        cnn: tuple[LayerSuggestion, int] | None = _cnn_layer(model, calls, counts, size, position)
    except ValueError:
        if tokens is None:
            raise
        cnn = None
    if tokens is None:
        assert cnn is not None
        # attention that mixes tokens of the batch after the map: the map is a stem's, and
        # the tokens the model classifies form no grid ucag can read (TNT's two streams)
        late = [
            c
            for c in calls[cnn[1] + 1 :]
            if c.module is not None
            and c.module is not model
            and _is_attention(c.module)
            and _mixes_tokens(_primary(c.output))
        ]
        if late:
            raise ValueError(
                f"model: {type(model).__name__}'s last spatial map ({cnn[0].name}) comes before its attention ({late[-1].name}), whose tokens ucag cannot lay out "
                "as a grid of the image; give the target layer and its reshape_transform yourself"
            )
        return cnn[0]
    if cnn is None:
        return tokens[0]
    # a hybrid: its CNN map counts when convolutions computed it after the last token block
    # (a re-layout of that block's tokens, as a Swin stage returns them, does not)
    convolved = any(isinstance(c.module, nn.Conv2d) and tokens[1] < i <= cnn[1] for i, c in enumerate(calls))
    return cnn[0] if convolved else tokens[0]


def _mixes_tokens(value: Any) -> bool:
    """A (B, T, C) sequence of several tokens of the traced batch."""
    return isinstance(value, torch.Tensor) and value.dim() == 3 and value.shape[0] == TRACE_BATCH and value.shape[1] > 1


def _call_counts(calls: list[_Call]) -> dict[int, int]:
    """How many times each module ran in the traced forward, by id."""
    counts: dict[int, int] = {}
    for call in calls:
        if call.module is not None:
            counts[id(call.module)] = counts.get(id(call.module), 0) + 1
    return counts


def _bad_size(value: Any) -> tuple[int, int]:
    raise ValueError(f"input_size: expected a positive int or an (h, w) pair, got {value!r}")


def _on_the_image(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether an h x w grid can cover an image of ``size``: no larger than it, and about the
    same stride along both sides (within a quarter, for the rounding of odd sizes)."""
    H, W = size
    if not (1 <= h <= H and 1 <= w <= W):
        return False
    stride_h, stride_w = H / h, W / w
    return abs(stride_h - stride_w) <= 0.25 * max(stride_h, stride_w)


def _map_layout(value: Any, size: tuple[int, int]) -> Layout | None:
    """How a traced 4-D output of the batch is laid out: "NCHW" when its last two
    dimensions cover the image, "NHWC" when its middle two do instead; None otherwise (an
    attention tensor (B, heads, T, C'), a batch of windows)."""
    if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[0] != TRACE_BATCH:
        return None
    _, a, b, c = (int(v) for v in value.shape)
    if _on_the_image(b, c, size):
        return "NCHW"
    if _on_the_image(a, b, size):
        return "NHWC"
    return None


def _is_spatial_map(value: Any, size: tuple[int, int]) -> bool:
    """A (B, C, H, W) map of the traced batch with more than one position."""
    return _map_layout(value, size) == "NCHW" and value.shape[-2] * value.shape[-1] > 1


def _outermost_once(
    model: nn.Module, calls: list[_Call], tensor: torch.Tensor, counts: dict[int, int], outside: str | None = None
) -> _Call | None:
    """Among the module calls that return ``tensor`` (outside the module named ``outside``),
    the outermost that runs once, preferring a block to a plain container; None if every
    one of them runs more than once."""
    same = [
        c for c in calls if c.module is not None and c.output is tensor and c.module is not model and not c.passthrough
    ]
    if outside is not None:
        same = [c for c in same if not _inside(c.name, outside)]
    once = [c for c in same if counts[id(c.module)] == 1]
    blocks = [c for c in once if type(c.module) not in (nn.Sequential, nn.ModuleList)]
    return min(blocks or once, key=lambda c: c.name.count("."), default=None)


def _tap_for(model: nn.Module, call: _Call, kind: SiteKind = "output") -> Tap:
    """A tap on ``call``: the output of that call of its module or function, or (``kind``
    "input") the input of the module."""
    if call.module is None:
        name = call.name.replace("torch.nn.functional.", "F.")
        return Tap(
            CallSite(
                model, "function", f"{name}@{call.occurrence + 1}", function=call.function, occurrence=call.occurrence
            )
        )
    if kind == "input":
        return Tap(CallSite(model, "input", f"{call.name}@input", module=call.module, occurrence=call.occurrence))
    return Tap(
        CallSite(model, "output", f"{call.name}@{call.occurrence + 1}", module=call.module, occurrence=call.occurrence)
    )


def _dense_output_channels(model: nn.Module, calls: list[_Call]) -> int | None:
    """K for a model whose traced output is dense (B, K, H, W) logits (a tensor, or
    torchvision's ``OrderedDict(out=...)``); None for every other output."""
    output = next((c.output for c in reversed(calls) if c.module is model), None)
    if isinstance(output, Mapping):
        output = output.get("out", output.get("logits"))
    return int(output.shape[1]) if isinstance(output, torch.Tensor) and output.dim() == 4 else None


def _cnn_layer(
    model: nn.Module, calls: list[_Call], counts: dict[int, int], size: tuple[int, int], position: dict[int, int]
) -> tuple[LayerSuggestion, int]:
    """The CNN rule of `layer_suggestion`, with the trace position of the map."""
    logit_channels = _dense_output_channels(model, calls)
    spatial = [
        c
        for c in calls
        if c.module is not model
        and not c.passthrough
        # a segmentation model's logits before their upsampling are its output, not a feature map
        and not (
            logit_channels is not None
            and isinstance(c.output, torch.Tensor)
            and c.output.dim() == 4
            and c.output.shape[1] == logit_channels
        )
        and not isinstance(c.module, _HEAD_POOLS)
        # a module shared by several calls can be tapped only as an activation (a shared
        # convolution inside attention, CoaT's, computes no feature map of the image)
        and (
            c.module is None
            or counts[id(c.module)] == 1
            or isinstance(c.module, _ACTIVATIONS)
            or _outermost_once(model, calls, c.output, counts) is not None
        )
        and _is_spatial_map(c.output, size)
    ]
    if not spatial:
        raise ValueError(
            f"model: {type(model).__name__} has no layer with a spatial (B, C, H, W) output that keeps the batch, nor blocks of patch tokens, at {size[0]}x{size[1]}; give the target layer yourself"
        )
    last_call = spatial[-1]
    last = last_call.output
    _, channels, h, w = last.shape
    feature = f"{channels} x {h} x {w} at {size[0]}x{size[1]} input"
    # the last call to write that tensor: an activation (module or function) makes the map
    # post-activation; in-place ops (ReLU(inplace=True), `out += identity`) write into
    # their input's tensor
    writers = [
        c
        for c in calls
        if c.output is last and not c.passthrough and (c.module is None or next(c.module.children(), None) is None)
    ]
    last_writer = writers[-1] if writers else last_call
    after_activation = last_writer.module is None or isinstance(last_writer.module, _ACTIVATIONS)
    chosen = None if last_call.module is None else _outermost_once(model, calls, last, counts)
    if chosen is None:
        # no module that runs once outputs the map: tap the call that produced it
        tap = _tap_for(model, last_call)
        how = (
            "an activation the model applies as a function"
            if last_call.module is None
            else f"a module shared by {counts[id(last_call.module)]} calls"
        )
        reason = f"the last spatial feature map of {type(model).__name__} ({feature}), after its activation; {how}, so a tap reads that one call ({tap.site.describe()})"
        return LayerSuggestion(tap.name, tap, None, "NCHW", (int(h), int(w)), size, reason), position[id(last_call)]
    if after_activation or not isinstance(last_writer.module, (*_NORMS, nn.Conv2d)):
        why = "after its activation" if after_activation else "the end of the network's last block"
        reason = f"the last spatial feature map of {type(model).__name__} ({feature}), {why}"
    else:
        reason = f"the last spatial feature map of {type(model).__name__} ({feature}); the last operation on it is a {type(last_writer.module).__name__}, not an activation"
    assert chosen.module is not None
    return LayerSuggestion(chosen.name, chosen.module, None, "NCHW", (int(h), int(w)), size, reason), position[
        id(last_call)
    ]


def resolution_layers(
    model: nn.Module,
    target_layer: nn.Module | None = None,
    count: int = 3,
    input_size: int | tuple[int, int] | None = None,
) -> list[LayerSuggestion]:
    """One CNN layer per spatial resolution, for multi-layer CAMs (RefineCAM).

    They are the layers that end the last ``count`` resolutions of the network, coarsest
    (``target_layer``) last, found from one traced forward pass of a blank image.

    For each resolution before the target layer's, the chosen layer is the last module of
    the *shallowest* depth (fewest dots in its name) whose output has that resolution —
    the end of a stage (``layer3`` of a ResNet, ``blocks.4`` of a timm EfficientNet,
    ``features.29`` of a VGG), not the expansion convolution of the next stage's first
    block, which still runs at that resolution — then, among the modules returning that
    same tensor, the outermost block that runs once (``layer3[-1]`` rather than the
    ``layer3`` container), as [layer_suggestion][ucag.models.layer_suggestion] chooses.

    Args:
        model: The CNN.
        target_layer: The coarsest layer (default
            [layer_suggestion][ucag.models.layer_suggestion]'s).
        count: How many resolutions, at most.
        input_size: The side, or (H, W), of the blank batch to trace (default
            [trace_size][ucag.models.trace_size]).

    Returns:
        The layers, finest first; fewer than ``count`` when the network has fewer
            resolutions.

    Raises:
        TypeError: ``count`` is not an int.
        ValueError: ``count`` is below 1, ``input_size`` is not a positive int or an (h, w)
            pair, the model is a transformer, or the target layer's output is not a
            (B, C, H, W) map of the forward pass (a transformer's tokens: give the layers
            yourself).

    Examples:
        >>> from torch import nn
        >>> from ucag.models import resolution_layers
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
        ... )
        >>> [(layer.name, layer.feature_size) for layer in resolution_layers(model, input_size=32)]
        [('1', (32, 32)), ('3', (16, 16))]
    """
    positive_int("count", count, " (resolutions)")
    size = trace_size(model) if input_size is None else (_config_size(input_size) or _bad_size(input_size))
    if target_layer is None:
        suggestion = layer_suggestion(model, size)
        if suggestion.layout != "NCHW":
            raise ValueError(
                f"model: {type(model).__name__} is a transformer ({suggestion.layout} layer {suggestion.name!r}); its tokens have one resolution: give the layers yourself"
            )
        target_layer = suggestion.layer
    calls = _trace(model, size)
    counts = _call_counts(calls)
    end = _site_index(calls, target_layer)
    if end is None or not _is_spatial_map(calls[end].output, size):
        raise ValueError(
            f"target_layer: {type(target_layer).__name__} gives no (B, C, H, W) feature map in a forward pass of {type(model).__name__} at {size[0]}x{size[1]}"
        )
    spatial = [
        c
        for c in calls[: end + 1]
        if c.module is not None
        and c.module is not model
        and not c.passthrough
        and not isinstance(c.module, _HEAD_POOLS)
        and _is_spatial_map(c.output, size)
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
    chosen: list[LayerSuggestion] = []
    for resolution in earlier:
        at = [c for c in spatial if tuple(c.output.shape[-2:]) == resolution]
        depth = min(c.name.count(".") for c in at)
        last = [c for c in at if c.name.count(".") == depth][-1].output
        same = [
            c
            for c in calls
            if c.module is not None and c.output is last and c.module is not model and not c.passthrough
        ]
        blocks = [c for c in same if counts[id(c.module)] == 1 and type(c.module) not in (nn.Sequential, nn.ModuleList)]
        shallowest = min(c.name.count(".") for c in blocks or same)
        pick = [c for c in blocks or same if c.name.count(".") == shallowest][-1]  # after an in-place activation
        _, channels, h, w = last.shape
        chosen.append(
            LayerSuggestion(
                pick.name,
                pick.module,  # type: ignore[arg-type]
                None,
                "NCHW",
                (int(h), int(w)),
                size,
                f"the end of the {h} x {w} stage ({channels} channels at {size[0]}x{size[1]} input)",
            )
        )
    _, channels, h, w = calls[end].output.shape
    chosen.append(
        LayerSuggestion(
            layer_name(model, target_layer),
            target_layer,
            None,
            "NCHW",
            (int(h), int(w)),
            size,
            f"the target layer ({channels} x {h} x {w} at {size[0]}x{size[1]} input)",
        )
    )
    return chosen


def _token_layout(value: Any, size: tuple[int, int]) -> tuple[TokenGrid | ChannelsLast, Layout, int, int] | None:
    """How a traced output is laid out as patch tokens of the batch: (B, T, C) tokens that
    form a grid of the image's aspect ratio after some prefix tokens, or a channels-last
    (B, H, W, C) map (`_map_layout`); None otherwise."""
    if not isinstance(value, torch.Tensor) or value.dim() not in (3, 4) or value.shape[0] != TRACE_BATCH:
        return None
    if value.dim() == 3:
        try:
            prefix, h, w = _token_grid(int(value.shape[1]), size)
        except ValueError:
            return None
        return (TokenGrid(h, w, prefix), "tokens", h, w) if h * w > 1 else None  # a class token alone is no grid
    if _map_layout(value, size) == "NHWC":
        return ChannelsLast(), "NHWC", int(value.shape[1]), int(value.shape[2])
    return None


def _primary(value: Any) -> Any:
    """A block's output tensor: itself, or the first element of a tuple (Hugging Face
    layers return their hidden states first)."""
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return value


def _is_norm(module: nn.Module) -> bool:
    """Any normalisation layer (batch, group, layer, RMS, …), by type or class name."""
    return isinstance(module, _NORMS) or bool(_NORM_NAME.search(type(module).__name__))


def _token_layer(
    model: nn.Module, calls: list[_Call], counts: dict[int, int], size: tuple[int, int], position: dict[int, int]
) -> tuple[LayerSuggestion, int] | None:
    """The token rule of `layer_suggestion`, with the trace position of the block;
    None when the model has no repeated blocks of patch tokens."""
    repeated = {
        id(child) for m in model.modules() if isinstance(m, (nn.Sequential, nn.ModuleList)) for child in m.children()
    }
    attention = [c.name for c in calls if c.module is not None and c.module is not model and _is_attention(c.module)]
    candidates = [
        c
        for c in calls
        if c.module is not None
        and c.module is not model
        and id(c.module) in repeated
        and counts[id(c.module)] == 1
        and next(c.module.children(), None) is not None  # a block, not a single layer
        and not any(_inside(c.name, a) for a in attention)
        and _token_layout(c.first_input, size) is not None
        and not (
            isinstance(c.output, (tuple, list)) and sum(_token_layout(o, size) is not None for o in c.output) > 1
        )  # one stream (not CoaT's parallel scales)
        and _token_layout(_primary(c.output), size) is not None
        and any(_is_norm(m) for m in c.module.modules())
    ]
    # tokens that a cross-attention computed from a learnt set of queries (Perceiver's
    # latents) are no grid of the image, whatever their count: only blocks before it count
    cross = [
        c
        for c in calls
        if c.module is not None
        and _is_attention(c.module)
        and len({int(t.shape[1]) for t in c.inputs if _mixes_tokens(t)}) > 1
    ]
    if cross:
        candidates = [c for c in candidates if position[id(c)] < position[id(cross[0])]]
    # the innermost blocks (a stage of blocks is a block too), the last to finish
    blocks = [c for c in candidates if not any(o is not c and _inside(o.name, c.name) for o in candidates)]
    if not blocks:
        return None
    block = blocks[-1]
    inner_attention = [a for a in attention if _inside(a, block.name) and a != block.name]
    norms = [
        c
        for c in calls
        if c.module is not None
        and _is_norm(c.module)
        and _inside(c.name, block.name)
        and c.name != block.name
        and counts[id(c.module)] == 1
        and not any(_inside(c.name, a) for a in inner_attention)
    ]
    chosen: _Call | None
    if norms and norms[0].first_input is block.first_input and _token_layout(norms[0].output, size) is not None:
        # pre-norm: the first norm reads the block's input, and the mixing reads the norm
        chosen = norms[0]
        where = f"the first norm of the last token block {block.name!r} (pre-norm)"
    else:
        # post-norm (its norms follow the mixing) or none: the tokens entering the block
        chosen = _outermost_once(model, calls, block.first_input, counts, outside=block.name)
        where = f"the tokens entering the last token block {block.name!r} (its first norm follows the token mixing)"
    layout = _token_layout(chosen.output if chosen is not None else block.first_input, size)
    if layout is None:
        return None
    transform, kind, h, w = layout
    if chosen is not None and chosen.module is not None:
        layer: nn.Module = chosen.module
        name = chosen.name
    else:
        tap = _tap_for(model, block, "input")
        layer, name = tap, tap.name
    prefix = transform.prefix_tokens if isinstance(transform, TokenGrid) else 0
    extra = f", after {prefix} prefix token{'s' if prefix > 1 else ''} (class/distillation/register)" if prefix else ""
    shape = "(B, H, W, C)" if kind == "NHWC" else "(B, T, C)"
    reason = f"{where}: a {h} x {w} grid of tokens {shape}{extra} at {size[0]}x{size[1]} input, all of which the class prediction still reads"
    return LayerSuggestion(name, layer, transform, kind, (h, w), size, reason), position[id(block)]


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
    raise ValueError(
        f"model: cannot lay {tokens} tokens out as a grid with the image's {H}:{W} aspect ratio; give the target layer and reshape_transform yourself"
    )


def _site_index(calls: list[_Call], layer: nn.Module) -> int | None:
    """The index of the traced call whose output ``layer`` (a module, or a
    `Tap` on an "output" or "function" site) gives; None if none."""
    if not isinstance(layer, Tap):
        return next((i for i, c in enumerate(calls) if c.module is layer), None)
    site = layer.site
    for i, c in enumerate(calls):
        if c.occurrence == site.occurrence and (
            (site.kind == "function" and c.module is None and c.function is site.function)
            or (site.kind != "function" and c.module is site.module)
        ):
            return i
    return None


def _site_output(calls: list[_Call], layer: nn.Module) -> Any:
    """What ``layer`` (a module or a `Tap`) outputs in the traced forward
    (None if it does not run)."""
    index = _site_index(calls, layer)
    if index is None:
        return None
    if isinstance(layer, Tap) and layer.site.kind == "input":
        return calls[index].first_input
    return calls[index].output


def reshape_transform_for(model: nn.Module, layers: Sequence[nn.Module]) -> TokenGrid | ChannelsLast | None:
    """The ``reshape_transform`` grad-cam needs for ``layers`` of ``model``.

    Models with neither attention nor LayerNorm are not traced; the others are, with one
    forward pass of a blank batch at [trace_size][ucag.models.trace_size].

    Args:
        model: The model.
        layers: CAM target layers of ``model`` (modules or [taps][ucag.layers.Tap]).

    Returns:
        None for CNN feature maps, a [TokenGrid][ucag.models.TokenGrid] for (B, T, C)
            tokens, [ChannelsLast][ucag.models.ChannelsLast] for a (B, H, W, C) map.

    Raises:
        ValueError: The layers need different transforms, a layer's tokens form no grid of
            the image, or the traced forward pass fails.
    """
    if not any(_is_attention(m) or _is_layer_norm(m) for m in model.modules()):
        return None
    size = trace_size(model)
    calls = _trace(model, size)
    found: set[TokenGrid | ChannelsLast | None] = set()
    for layer in layers:
        output = _site_output(calls, layer)
        layout = _token_layout(output, size)
        if layout is None and isinstance(output, torch.Tensor) and output.dim() == 3:
            _token_grid(int(output.shape[1]), size)  # raises: tokens that form no grid
        found.add(layout[0] if layout is not None else None)
    if len(found) > 1:
        raise ValueError(
            f"target_layers: the layers need different reshape transforms ({sorted(map(str, found))}); give the CAM one reshape_transform yourself"
        )
    return found.pop() if found else None


def layer_by_name(model: nn.Module, name: str) -> nn.Module:
    """The target layer ``name`` names in ``model``.

    Args:
        model: The model.
        name: A dotted module name (``"layer4.1"``), or a call site as
            [LayerSuggestion][ucag.models.LayerSuggestion] writes it (``"_swish@2"``: the
            output of the 2nd call of ``_swish``; ``"F.relu@121"``: of the 121st call of
            ``torch.nn.functional.relu``; ``"blocks.11@input"``: the input of ``blocks.11``).

    Returns:
        The submodule, or for a call site a [Tap][ucag.layers.Tap] on it.

    Raises:
        ValueError: A name that names nothing (with the closest module names) or a call site
            that is not ``@N`` (from 1) or ``@input``.

    Examples:
        >>> from torch import nn
        >>> from ucag.models import layer_by_name
        >>> act = nn.ReLU()  # one module called twice
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), act, nn.Conv2d(4, 4, 3), act)
        >>> layer_by_name(model, "2")
        Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1))
        >>> layer_by_name(model, "1@2")  # the output of the 2nd call of model[1]
        Tap(1@2)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"layer: expected a module name, got {name!r}")
    target, at, where = name.rpartition("@")
    if not at:
        try:
            return model.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            close = difflib.get_close_matches(name, names, n=3)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else f"its top-level modules: {', '.join(n for n, _ in model.named_children())}"
            )
            raise ValueError(f"layer: {type(model).__name__} has no submodule {name!r}; {hint}") from None
    functions = {label.replace("torch.nn.functional.", "F."): f for f, label in _ACTIVATION_FUNCTIONS.items()}
    if where == "input" or target not in functions:
        try:
            module = model.get_submodule(target)
        except AttributeError:
            raise ValueError(
                f"layer: {target!r} in {name!r} is not a module of {type(model).__name__} (nor a known activation function)"
            ) from None
    if where == "input":
        return Tap(CallSite(model, "input", name, module=module))
    if not where.isdigit() or int(where) < 1:
        raise ValueError(f"layer: {name!r} should end in @N, the N-th call (from 1), or @input")
    occurrence = int(where) - 1
    if target in functions:
        return Tap(CallSite(model, "function", name, function=functions[target], occurrence=occurrence))
    return Tap(CallSite(model, "output", name, module=module, occurrence=occurrence))


def suggest_target_layer(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> nn.Module:
    """The CAM target layer [layer_suggestion][ucag.models.layer_suggestion] finds, as a module to pass to a CAM.

    ``GradCAM(model, [ucag.suggest_target_layer(model)])``. For a transformer, grad-cam also
    needs ``reshape_transform=ucag.layer_suggestion(model).reshape_transform`` —
    [UCAG][ucag.explainer.UCAG] adds it by itself when the CAM has none.

    Args:
        model: The classifier.
        input_size: The side, or (H, W), of the blank batch to trace (default
            [trace_size][ucag.models.trace_size]).

    Returns:
        The layer (a module of ``model``, or a [Tap][ucag.layers.Tap]).

    Raises:
        ValueError: As [layer_suggestion][ucag.models.layer_suggestion].

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
        ... )
        >>> from ucag.models import suggest_target_layer
        >>> suggest_target_layer(model) is model[2]
        True
    """
    return layer_suggestion(model, input_size).layer


__all__ = [
    "ChannelsLast",
    "LayerSuggestion",
    "LogitsOnly",
    "TokenGrid",
    "layer_by_name",
    "layer_suggestion",
    "logits_of",
    "model_input_size",
    "model_normalization",
    "model_size_multiple",
    "reshape_transform_for",
    "resolution_layers",
    "suggest_target_layer",
    "trace_size",
]


# ---------------------------------------------------------------------------------------
# Loading a model by name
# ---------------------------------------------------------------------------------------

#: What `load_model` takes besides ``package.module:factory``.
MODEL_SOURCES = "timm:NAME, torchvision:NAME, hf:FOLDER"


def _known_name(name: str, names: Sequence[str], library: str, spec: str) -> None:
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"see {library}'s model list"
        raise ValueError(f"model: {library} has no model {name!r} ({spec}); {hint}")


def load_weights(model: nn.Module, weights: str | Path, spec: str = "the model") -> None:
    """Load a state dict file into ``model``, strictly.

    Args:
        model: The model to load the weights into.
        weights: A file saved with ``torch.save(model.state_dict(), path)`` or a
            ``.safetensors`` file; a training checkpoint's ``state_dict``/``model`` entry is
            read too.
        spec: How the model is named in the error messages.

    Raises:
        ValueError: ``weights`` is missing, a folder, not readable as PyTorch weights or not
            a state dict, or its tensors do not fit ``model``; the message names ``weights``
            and says which tensors do not fit.
        ImportError: A ``.safetensors`` file without the ``models`` extra (safetensors).
    """
    path = Path(weights)
    if not path.exists():
        raise ValueError(f"weights: no such file {str(weights)!r}")
    if path.is_dir():
        raise ValueError(
            f"weights: {str(weights)!r} is a folder; give the weights file (a state dict saved with torch.save)"
        )
    try:
        if path.suffix == ".safetensors":
            state: Any = require("safetensors.torch", "models", "a .safetensors weights file").load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise
    except Exception as err:
        raise ValueError(
            f"weights: cannot read {str(weights)!r} as PyTorch weights ({quote_error(err)}); give a state dict saved with torch.save(model.state_dict(), path)"
        ) from None
    for key in ("state_dict", "model"):  # training checkpoints keep the weights under one of these
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise ValueError(
            f"weights: {str(weights)!r} holds a {type(state).__name__}, not a state dict; give one saved with torch.save(model.state_dict(), path)"
        )
    own = model.state_dict()
    problems = []
    mismatched = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in state
        and isinstance(v, torch.Tensor)
        and isinstance(state[k], torch.Tensor)
        and state[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if mismatched:
        problems.append(f"size mismatch for {len(mismatched)} tensor(s), e.g. {mismatched[0]}")
    if missing:
        problems.append(f"{len(missing)} tensor(s) of the model missing from the file, e.g. {missing[0]!r}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) in the file that the model lacks, e.g. {unexpected[0]!r}")
    if not problems:
        try:
            model.load_state_dict(state)
            return
        except Exception as err:
            problems.append(quote_error(err))
    raise ValueError(
        f"weights: {str(weights)!r} does not fit {spec}: {'; '.join(problems)}; give weights saved from the model {spec} builds"
    )


def _hf_model(spec: str, folder: str) -> tuple[nn.Module, list[str]]:
    """A Hugging Face image classifier saved in a local folder (``save_pretrained``) and its labels."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model: {spec}: {folder!r} is not a folder with a config.json; give a folder written by model.save_pretrained(...)"
        )
    transformers = require("transformers", "models", spec)
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(path, local_files_only=True)
    except Exception as err:
        raise ValueError(f"model: cannot load an image classifier from {folder!r} ({quote_error(err)})") from None
    labels = getattr(model.config, "id2label", None) or {}
    names = [str(labels.get(i, i)) for i in range(len(labels))]
    # transformers' placeholders (LABEL_0, ...) name nothing
    return model, names if names and names[0] != "LABEL_0" else []


def _factory_model(spec: str) -> nn.Module:
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ValueError(
            f"model: expected 'package.module:factory' (e.g. torchvision.models:resnet18) or one of {MODEL_SOURCES}, got {spec!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ValueError(
            f"model: cannot import {module_name!r} ({quote_error(err)}); give an importable module (is its folder on PYTHONPATH?)"
        ) from None
    factory: Any = module
    for part in factory_name.split("."):
        factory = getattr(factory, part, None)
    if factory is None:
        raise ValueError(
            f"model: module {module_name!r} has no {factory_name!r}; give the name of a function in it that returns the model"
        )
    if not callable(factory):
        raise ValueError(f"model: {spec} is a {type(factory).__name__}, not a function that returns the model")
    try:
        model = factory()
    except Exception as err:
        raise ValueError(
            f"model: {spec}() raised {quote_error(err)}; give a factory that builds the model with no arguments"
        ) from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {spec}() returned a {type(model).__name__}, expected a torch.nn.Module")
    return model


def build_model(
    spec: str, weights: str | Path | None = None, num_classes: int | None = None
) -> tuple[nn.Module, list[str]]:
    """The model ``spec`` names, with random weights unless ``weights`` holds them.

    Nothing is downloaded.

    Args:
        spec: ``timm:NAME``, ``torchvision:NAME``, ``hf:FOLDER`` (saved with
            ``save_pretrained``; the folder holds the weights) or ``package.module:factory``
            (a function that builds the model with no arguments).
        weights: A state dict file for the model (`load_weights`); none for ``hf:``.
        num_classes: The size of a timm or torchvision classifier's head.

    Returns:
        The model and the class names its library records (a Hugging Face config's labels;
            else none).

    Raises:
        TypeError: ``spec`` is not a string, or ``num_classes`` not an int.
        ValueError: ``spec`` names no model (with the closest names), its factory fails,
            ``weights`` or ``num_classes`` do not apply to it, ``num_classes`` is below 1, or
            the weights do not fit; the message names the argument.
        ImportError: The library ``spec`` needs is not installed (the ``models`` extra).
    """
    if not isinstance(spec, str):
        raise TypeError(f"model: expected a string such as 'timm:resnet50', got {type(spec).__name__}")
    if num_classes is not None:
        positive_int("num_classes", num_classes)
    source, _, name = spec.partition(":")
    head = {} if num_classes is None else {"num_classes": num_classes}
    if source == "timm":
        timm = require("timm", "models", spec)
        _known_name(name, timm.list_models(), "timm", spec)
        model = timm.create_model(name, pretrained=False, **head)
    elif source == "torchvision":
        library = require("torchvision.models", "models", spec)
        _known_name(name, library.list_models(), "torchvision", spec)
        model = library.get_model(name, weights=None, **head)
    elif source == "hf":
        if weights is not None:
            raise ValueError(f"weights: {spec} loads the weights saved in its folder; give none")
        if num_classes is not None:
            raise ValueError(f"num_classes: {spec} has the classes saved in its folder; give none")
        return _hf_model(spec, name)
    else:
        if num_classes is not None:
            raise ValueError(f"num_classes: applies to timm: and torchvision: models; {spec} builds its own head")
        model = _factory_model(spec)
    if weights is not None:
        load_weights(model, weights, spec)
    return model, []


def load_model(
    spec: str,
    weights: str | Path | None = None,
    *,
    num_classes: int | None = None,
    layer: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> PreparedModel:
    """A model by name, in eval mode, with what UCAG needs around it.

    That is its CAM target layer and the ``reshape_transform`` a transformer's layer needs,
    its input size, normalisation and class names (its library's, else ImageNet's for 1000
    classes, else the indices). Errors name the argument.

    Args:
        spec: The model, as `build_model` takes it.
        weights: A state dict file for the model, as `build_model` takes it.
        num_classes: The size of a timm or torchvision classifier's head.
        layer: The CAM target layer, a submodule or call-site name
            ([layer_by_name][ucag.models.layer_by_name]); default
            [layer_suggestion][ucag.models.layer_suggestion]'s.
        mean: The normalisation mean (R, G, B); default the library's, else ImageNet's.
        std: The normalisation standard deviation (R, G, B); default the library's, else
            ImageNet's.

    Returns:
        The model with its target layer, class names, normalisation and input size.

    Raises:
        TypeError: As `build_model`.
        ValueError: As `build_model`; also a model that takes non-square inputs, a
            ``layer`` that names nothing, ``mean`` or ``std`` without 3 values, or a model
            that fails on a blank image.
        ImportError: The library ``spec`` needs is not installed (the ``models`` extra).

    Examples:
        >>> prepared = load_model("torchvision:resnet18", num_classes=10)  # doctest: +SKIP
        >>> prepared.target_layer is prepared.model.layer4  # doctest: +SKIP
        True
    """
    from .data import IMAGENET_MEAN, IMAGENET_STD, PreparedModel, default_class_names

    model, names = build_model(spec, weights, num_classes)
    model.eval()
    size = trace_size(model)
    if size[0] != size[1]:
        raise ValueError(f"model: {spec} takes {size[0]}x{size[1]} inputs; a PreparedModel feeds square images")
    suggestion: LayerSuggestion | None = None
    if layer:
        target = layer_by_name(model, layer)
        transform = reshape_transform_for(model, [target])
    else:
        suggestion = layer_suggestion(model)
        target, transform = suggestion.layer, suggestion.reshape_transform
    own_mean, own_std = model_normalization(model) or (IMAGENET_MEAN, IMAGENET_STD)
    mean, std = tuple(mean or own_mean), tuple(std or own_std)
    for argument, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ValueError(f"{argument}: expected 3 values (R, G, B), got {len(values)}")
    if not names:
        try:
            with torch.no_grad(), attached([target]):
                classes = int(logits_of(model(torch.zeros(1, 3, *size))).shape[-1])
        except Exception as err:
            raise ValueError(f"model: {spec} fails on a 1x3x{size[0]}x{size[1]} image ({quote_error(err)})") from None
        names = default_class_names(classes)
    return PreparedModel(
        model=model,
        target_layer=target,
        class_names=names,
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        input_size=size[0],
        reshape_transform=transform,
        suggestion=suggestion,
    )

"""Target layers at run time: taps for maps that no module outputs once, and the check that
every CAM's target layers run once per forward and keep the batch.

A CAM hooks a module: it records the module's output and that output's gradient, one pair
per call. That pairing breaks when the map a CAM should read has no module of its own that
runs once per forward (docs/algorithm.md §8.1):

- a **shared activation module** called at several places (efficientnet-lite-pytorch's and
  lukemelas' EfficientNet reuse one ``_swish`` after the stem and after the head);
- an **activation applied as a function** (torchvision's DenseNet ends with
  ``F.relu(features)``);
- the tokens **entering a transformer block** that no module outputs on its own.

A [Tap][ucag.layers.Tap] stands in for such a map: an identity module that a
[CallSite][ucag.layers.CallSite]'s output passes through while the tap is attached
([Tap.attached][ucag.layers.Tap.attached]). A CAM built on the tap sees exactly that call's
output and gradient. [attached][ucag.layers.attached] attaches every tap among a CAM's layers
for the duration of a call; ucag's adapters, baselines and evaluation do so for every call,
and the model is left without a hook afterwards.

[checked_target_layers][ucag.layers.checked_target_layers] guards every CAM call ucag makes: a
target layer that runs more than once (or never) in one forward, or whose output's first
dimension is not the input's batch (hybrid models that fold image patches into the batch),
raises [TargetLayerError][ucag.layers.TargetLayerError] before any map is made, naming the
layer and suggesting one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

#: "output": the ``occurrence``-th call of ``module`` (its output); "function": the
#: ``occurrence``-th call of an activation ``function`` in the forward pass (its output);
#: "input": the tokens entering ``module`` (its first positional input).
SiteKind: TypeAlias = Literal["output", "function", "input"]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True, eq=False)
class CallSite:
    """One place in a forward pass of ``model``, where a [Tap][ucag.layers.Tap] reads a map.

    ``name`` is how ucag writes it (``"_swish@2"``: the output of ``_swish``'s 2nd call;
    ``"F.relu@121"``: the 121st call of ``torch.nn.functional.relu``; ``"blocks.11@input"``),
    which [layer_by_name][ucag.models.layer_by_name] reads back.

    Attributes:
        model: The model whose forward pass the site is in.
        kind: A `SiteKind`: ``"output"``, the ``occurrence``-th call of ``module`` (its
            output); ``"function"``, the ``occurrence``-th call of the activation ``function``
            in the forward pass (its output); ``"input"``, the tokens entering ``module`` (its
            first positional input, or its first tensor keyword argument).
        name: The site's name, as above.
        module: The module called (kinds ``"output"`` and ``"input"``), else None.
        function: The activation function called (kind ``"function"``), else None.
        occurrence: 0-based, among the calls of the module or function in one forward.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.layers import CallSite
        >>> act = nn.ReLU()
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), act, nn.Conv2d(4, 4, 3), act)
        >>> CallSite(model, "output", "1@2", module=act, occurrence=1).describe()
        "the output of the 2nd call of '1' (ReLU)"
    """

    model: nn.Module
    kind: SiteKind
    name: str
    module: nn.Module | None = None
    function: Callable[..., Any] | None = None
    occurrence: int = 0  # 0-based, among the calls of the module or function in one forward

    def describe(self) -> str:
        """The site in words, for error messages.

        Returns:
            A phrase such as ``"the output of the 2nd call of '_swish' (MemoryEfficientSwish)"``.
        """
        if self.kind == "function":
            return f"the {_ordinal(self.occurrence + 1)} call of {self.name.partition('@')[0]}() in a forward pass"
        module = self.name.partition("@")[0]
        if self.kind == "input":
            return f"the input of {module!r}"
        return f"the output of the {_ordinal(self.occurrence + 1)} call of {module!r} ({type(self.module).__name__})"


class Tap(nn.Identity):
    """A target layer for a map that no module of the model outputs once per forward.

    The map is the output of one call of a shared module, of an activation function, or a
    block's input. While [attached][ucag.layers.Tap.attached], that call's output passes
    through this module once per forward of the model, so a CAM's hooks on the tap record
    exactly that map and its gradient; the model computes what it computed before. ucag
    attaches taps for every call it makes ([attached][ucag.layers.attached]); to use one with a
    plain pytorch-grad-cam object:

    ```python
    suggestion = ucag.layer_suggestion(model)        # suggestion.layer may be a Tap
    with suggestion.attached(), GradCAM(model, [suggestion.layer]) as cam:
        maps = cam(input_tensor=x, targets=targets)
    ```

    Args:
        site: The call site whose output (or input) the tap stands for.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.layers import CallSite, Tap
        >>> act = nn.ReLU()
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), act, nn.Conv2d(4, 4, 3), act)
        >>> tap = Tap(CallSite(model, "output", "1@2", module=act, occurrence=1))
        >>> seen = []
        >>> handle = tap.register_forward_hook(lambda module, args, output: seen.append(output.shape))
        >>> with tap.attached():
        ...     _ = model(torch.zeros(1, 3, 8, 8))
        >>> seen
        [torch.Size([1, 4, 4, 4])]
        >>> handle.remove()
    """

    def __init__(self, site: CallSite) -> None:
        super().__init__()
        # kept out of the module tree: the tap must not own the model it reads
        self.__dict__["site"] = site
        self.__dict__["_depth"] = 0

    site: CallSite
    _depth: int

    @property
    def name(self) -> str:
        """The name of the tap's call site (``"_swish@2"``, ``"F.relu@121"``, ``"blocks.11@input"``)."""
        return self.site.name

    def extra_repr(self) -> str:
        """The site's name, shown in the tap's repr.

        Returns:
            The name of the tap's call site.
        """
        return self.site.name

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Route the site's output through the tap for the block.

        Nested blocks attach once; the model's hooks are removed on exit, also when the block
        raises.

        Yields:
            None; the tap is attached while the block runs.
        """
        if self._depth:
            self.__dict__["_depth"] += 1
            try:
                yield
            finally:
                self.__dict__["_depth"] -= 1
            return
        with contextlib.ExitStack() as stack:
            self._attach(stack)
            self.__dict__["_depth"] = 1
            try:
                yield
            finally:
                self.__dict__["_depth"] = 0

    def _attach(self, stack: contextlib.ExitStack) -> None:
        site = self.site
        count = [0]
        inside = [False]

        def start(module: nn.Module, args: Any) -> None:
            count[0] = 0
            inside[0] = True

        def end(module: nn.Module, args: Any, output: Any) -> None:
            inside[0] = False

        def due() -> bool:
            # the occurrence-th call of the site in this forward
            hit = count[0] == site.occurrence
            count[0] += 1
            return hit

        handles = [site.model.register_forward_pre_hook(start), site.model.register_forward_hook(end, always_call=True)]
        if site.kind == "output":
            assert site.module is not None

            def on_output(module: nn.Module, args: Any, output: Any) -> Any:
                return self(output) if due() else None

            handles.append(site.module.register_forward_hook(on_output))
        elif site.kind == "input":
            assert site.module is not None

            def on_input(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
                if not due():
                    return None
                if args and isinstance(args[0], torch.Tensor):
                    return (self(args[0]), *args[1:]), kwargs
                # the first input by keyword (Hugging Face layers take hidden_states=)
                key = next((k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None)
                return None if key is None else (args, {**kwargs, key: self(kwargs[key])})

            handles.append(site.module.register_forward_pre_hook(on_input, with_kwargs=True))
        else:
            mode = _FunctionTap(self, site.function, due, inside)
            stack.enter_context(mode)
        for handle in handles:
            stack.callback(handle.remove)


class _FunctionTap(TorchFunctionMode):
    """Passes the output of the tapped activation function's due call through the tap
    (only calls made inside the model's forward count)."""

    def __init__(
        self, tap: Tap, function: Callable[..., Any] | None, due: Callable[[], bool], inside: list[bool]
    ) -> None:
        super().__init__()
        self.tap, self.function, self.due, self.inside = tap, function, due, inside

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        output = func(*args, **(kwargs or {}))
        if func is self.function and self.inside[0] and self.due():
            return self.tap(output)
        return output


@contextlib.contextmanager
def attached(layers: Sequence[Any]) -> Iterator[None]:
    """Every [Tap][ucag.layers.Tap] among ``layers`` attached for the block.

    Other layers need nothing.

    Args:
        layers: A CAM's target layers: modules, taps among them.

    Yields:
        None; the taps are attached while the block runs.
    """
    with contextlib.ExitStack() as stack:
        for layer in layers:
            if isinstance(layer, Tap):
                stack.enter_context(layer.attached())
        yield


class TargetLayerError(ValueError):
    """A CAM's target layer that a CAM cannot use.

    It runs more than once (or never) per forward, or its output does not keep the input's
    batch. A `ValueError`.
    """


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    if isinstance(value, dict):
        return next((v for v in value.values() if isinstance(v, torch.Tensor)), None)
    return None


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """How ``layer`` is named in ``model`` (a tap: its site's name).

    Args:
        model: The model that holds ``layer``.
        layer: A module of ``model`` or a [Tap][ucag.layers.Tap].

    Returns:
        The layer's qualified name in ``model``, the tap's site name, or the layer's class
            name when ``model`` does not hold it.

    Examples:
        >>> from torch import nn
        >>> from ucag.layers import layer_name
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> layer_name(model, model[1]), layer_name(model, nn.Tanh())
        ('1', 'Tanh')
    """
    if isinstance(layer, Tap):
        return layer.name
    return next((n for n, m in model.named_modules() if m is layer), type(layer).__name__)


def _suggestion_hint(model: nn.Module) -> str:
    from .models import layer_suggestion

    try:
        suggestion = layer_suggestion(model)
    except ValueError:
        return "give a layer that runs once and keeps the batch"
    how = (
        "UCAG(GradCAM, model=model) taps it for you"
        if isinstance(suggestion.layer, Tap)
        else "UCAG(GradCAM, model=model) uses it"
    )
    return f"ucag.layer_suggestion(model) suggests {suggestion.name!r} ({how})"


@contextlib.contextmanager
def checked_target_layers(model: nn.Module, layers: Sequence[Any], argument: str = "target_layers") -> Iterator[None]:
    """Within the block, every forward of ``model`` checks a CAM's target layers.

    None of ``layers`` runs more than once, a [Tap][ucag.layers.Tap] runs exactly once, and
    each output's first dimension is the batch of the model's input. The error is raised
    during the forward pass, so before any map is made. (A module may run 0 times:
    AblationCAM swaps it out for its ablation forwards.) Hooks are removed on exit.

    Args:
        model: The model whose forwards are checked.
        layers: A CAM's target layers (entries that are not modules are not checked).
        argument: The argument name the error messages start with.

    Yields:
        None; the checks are in place while the block runs.

    Raises:
        TargetLayerError: In a forward of ``model``, when a layer runs more than once, a tap
            runs 0 times, or a layer's output does not keep the batch; the message names
            ``argument``, the layer and how often it ran, with a suggested layer.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.layers import TargetLayerError, checked_target_layers
        >>> act = nn.ReLU()
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), act, nn.Conv2d(4, 4, 3), act)
        >>> with checked_target_layers(model, [model[2]]):
        ...     _ = model(torch.zeros(1, 3, 8, 8))
        >>> try:
        ...     with checked_target_layers(model, [act]):
        ...         _ = model(torch.zeros(1, 3, 8, 8))
        ... except TargetLayerError as err:
        ...     print(str(err)[:52])
        target_layers: '1' (ReLU) ran 2 times in one forward
    """
    modules = [layer for layer in layers if isinstance(layer, nn.Module)]
    if not modules:
        yield
        return
    runs = {id(layer): 0 for layer in modules}
    batch: list[int | None] = [None]
    quiet = [False]  # while the error's hint traces the model: no checks

    def hint() -> str:
        quiet[0] = True
        try:
            return _suggestion_hint(model)
        finally:
            quiet[0] = False

    def start(module: nn.Module, args: Any, kwargs: Any) -> None:
        if quiet[0]:
            return
        for key in runs:
            runs[key] = 0
        first = _first_tensor(args) if args else _first_tensor(kwargs)
        batch[0] = int(first.shape[0]) if first is not None and first.dim() > 0 else None

    def seen(layer: nn.Module, args: Any, output: Any) -> None:
        if quiet[0]:
            return
        runs[id(layer)] += 1
        first = _first_tensor(output)
        if batch[0] is not None and first is not None and (first.dim() == 0 or int(first.shape[0]) != batch[0]):
            shape = tuple(first.shape)
            raise TargetLayerError(
                f"{argument}: {layer_name(model, layer)!r} ({type(layer).__name__}) outputs {shape} for a batch of {batch[0]}: its first dimension is not the batch "
                f"(the model folds image patches or tokens into it), so its maps cannot be matched to the images; {hint()}"
            )

    def end(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if quiet[0]:
            return
        for layer in modules:
            count = runs[id(layer)]
            if count == 1:
                continue
            name = layer_name(model, layer)
            if count == 0:
                # a module can sit out a forward (AblationCAM swaps it for its ablation
                # layer); a tap that never runs is not attached
                if isinstance(layer, Tap):
                    raise TargetLayerError(
                        f"{argument}: {name!r} (Tap) ran 0 times in one forward of {type(model).__name__}; it is not attached: use `with layer.attached():`"
                    )
                continue
            raise TargetLayerError(
                f"{argument}: {name!r} ({type(layer).__name__}) ran {count} times in one forward of {type(model).__name__} (a module shared by several places); "
                f"a CAM pairs one output with one gradient per call, so its map would mix them: {hint()}"
            )

    handles = [
        model.register_forward_pre_hook(start, with_kwargs=True),
        model.register_forward_hook(end, with_kwargs=True),
    ]
    handles += [layer.register_forward_hook(seen) for layer in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


__all__ = ["CallSite", "SiteKind", "Tap", "TargetLayerError", "attached", "checked_target_layers", "layer_name"]

"""The model as every entry point leaves it: its device, and its train/eval modes,
``requires_grad`` flags and hooks restored after a call, also when the call raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

#: The per-module hook registries of torch.nn.Module.
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore the model's train/eval modes, ``requires_grad`` flags and hooks on exit,
    also when the body raises (hooks added inside are removed, removed ones come back)."""
    modules = list(model.modules())
    training = [m.training for m in modules]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    hooks = [{name: dict(getattr(m, name)) for name in _HOOK_DICTS if hasattr(m, name)} for m in modules]
    try:
        yield
    finally:
        for m, mode in zip(modules, training, strict=True):
            m.training = mode
        for p, flag in requires_grad:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, saved in zip(modules, hooks, strict=True):
            for name, entries in saved.items():
                current = getattr(m, name)
                if current.keys() != entries.keys():
                    current.clear()
                    current.update(entries)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (as pytorch-grad-cam runs it: no dropout, batch norms use and
    keep their running statistics) for the block; its modes, ``requires_grad`` flags and
    hooks come back on exit (:func:`preserved_state`)."""
    with preserved_state(model):
        model.eval()
        yield

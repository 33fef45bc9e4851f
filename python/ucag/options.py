"""The vocabulary of UCAG's options: each option's allowed values (a ``Literal`` type) and
default, defined once and used by the explainer, the kernels, the baselines, the evaluation
toolkit and the CLI (docs/algorithm.md has what each value means).

Examples:
    >>> choices(Weighting)
    ('exp', 'prob', 'uniform')
    >>> DEFAULT_UNITS, DEFAULT_SCALE
    (6, 2.6)
    >>> check_choice("weighting", "softmax", Weighting)
    Traceback (most recent call last):
        ...
    ValueError: weighting: expected 'exp', 'prob' or 'uniform', got 'softmax'
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, get_args

#: How a patch's confidence p becomes its weight (§3): exp(p), p, or 1.
Weighting: TypeAlias = Literal["exp", "prob", "uniform"]
#: How the confidence is read from the logits: softmax (single-label) or sigmoid (multi-label).
Confidence: TypeAlias = Literal["softmax", "sigmoid"]
#: The fold's window over each patch (§4): the paper's box, or a tapered one.
FoldWindow: TypeAlias = Literal["box", "linear", "cosine"]
#: How the whole-image map is fused with the UCAG map (§5).
GlobalView: TypeAlias = Literal["product", "mean"]
#: Post-processing of the raw map: pytorch-grad-cam's (ReLU, min-max per map) or none.
Postprocess: TypeAlias = Literal["cam", "none"]
#: The arithmetic of the model's forwards and backwards (§10): float32, or autocast to
#: bfloat16 / float16 on the model's device.
Precision: TypeAlias = Literal["fp32", "bf16", "fp16"]
#: The memory layout of the model's inputs (§10): channels-last, contiguous, or ``"auto"``
#: (channels-last where the precision is lowered and the model has 2-D convolutions).
ChannelsLast: TypeAlias = bool | Literal["auto"]

#: Patches per side (the paper's 6 x 6 grid).
DEFAULT_UNITS = 6
#: The upsampling factor of each patch (124 -> 322 px at 224).
DEFAULT_SCALE = 2.6
#: Patches per forward/backward pass.
DEFAULT_BATCH_SIZE = 16
#: The weight of the global view in the fusion.
DEFAULT_GLOBAL_WEIGHT = 0.5
#: The model's arithmetic: float32, the reference arithmetic (§10 has what bf16 changes).
DEFAULT_PRECISION: Precision = "fp32"
#: The inputs' layout: channels-last only where the precision is lowered (§10).
DEFAULT_CHANNELS_LAST: ChannelsLast = "auto"


def choices(literal: Any) -> tuple[str, ...]:
    """The values a ``Literal`` type allows, in order.

    Args:
        literal: A ``typing.Literal`` type (or an alias of one).

    Returns:
        Its values, in the order the type lists them.

    Examples:
        >>> choices(FoldWindow)
        ('box', 'linear', 'cosine')
    """
    return tuple(get_args(literal))


def describe_choices(values: tuple[Any, ...]) -> str:
    """``'a', 'b' or 'c'``: the values as a message lists them.

    Args:
        values: The allowed values (at least one).

    Returns:
        Their reprs, joined by commas and a final "or".

    Examples:
        >>> describe_choices(("cam", "none"))
        "'cam' or 'none'"
    """
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def check_choice(argument: str, value: object, literal: Any, hint: str = "") -> None:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` is one of ``literal``'s values.

    Args:
        argument: The argument's name, which starts the error message.
        value: The value to check.
        literal: The ``typing.Literal`` type whose values are allowed.
        hint: Added after the allowed values in the message.

    Raises:
        ValueError: ``value`` is not one of the allowed values (a value of another type
            included: the message lists the strings it takes).
    """
    allowed = choices(literal)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{argument}: expected {describe_choices(allowed)}{hint}, got {value!r}")

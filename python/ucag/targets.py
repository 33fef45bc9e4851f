"""Targets: what a map explains, and how confident the model is about it on each patch
(docs/algorithm.md §3.1).

A [Target][ucag.targets.Target] gives three things for the rows of a model's output: the **score** whose
gradient the base method follows, the **confidence** in [0, 1] that UCAG's weighting
(``exp(p)``, ``p`` or uniform) turns into a patch weight, and the target **on a patch**
(only a segmentation mask changes: it is cropped to the patch). Called with one row of
output, as pytorch-grad-cam calls its target objects, a target returns its score, so it
can be handed to a CAM directly.

Built-in kinds, one registered entry each in ``TARGET_KINDS``:

- ``"class"`` ([ClassTarget][ucag.targets.ClassTarget]): one class of (B, K) logits; softmax probability. UCAG
  keeps its Rust confidence path for it (maps bit-identical to the class indices);
- ``"binary"`` ([BinaryTarget][ucag.targets.BinaryTarget]): one logit, (B,) or (B, 1); the positive side's
  confidence is sigmoid(logit), the negative side's 1 - sigmoid(logit);
- ``"multilabel"`` ([MultiLabelTarget][ucag.targets.MultiLabelTarget]): one class of (B, K) independent logits;
  sigmoid of its logit;
- ``"segmentation"`` ([SegmentationTarget][ucag.targets.SegmentationTarget]): a category and a mask in image
  coordinates over (B, K, H', W') dense logits; score: the category's output summed over
  the mask, confidence: its mean softmax probability over the mask;
- ``"similarity"`` ([SimilarityTarget][ucag.targets.SimilarityTarget]): a concept vector for (B, D) embeddings;
  score: cosine similarity, confidence: (1 + cos) / 2;
- ``"score"`` ([ScoreTarget][ucag.targets.ScoreTarget]): any ``score(output) -> (n,)`` with the user's own
  ``confidence(output) -> (n,)`` in [0, 1].

[as_target][ucag.targets.as_target] turns what a user passes (an int, a ``ucag.targets``
object or a pytorch-grad-cam target object, per ``GRADCAM_TARGETS``) into a target, and
[resolve][ucag.targets.resolve] checks one target per image against the model's output
before any patch runs.

Examples:
    >>> import torch
    >>> from ucag.targets import BinaryTarget, SimilarityTarget
    >>> BinaryTarget(0).confidence(torch.tensor([[0.0], [2.0]]))  # 1 - sigmoid(logit)
    tensor([0.5000, 0.1192])
    >>> SimilarityTarget(torch.tensor([1.0, 0.0])).confidence(torch.tensor([[0.0, 3.0]]))
    tensor([0.5000])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._inputs import logits_of
from .checks import is_int

#: One patch's box in image pixels: (top, left, height, width).
Box: TypeAlias = tuple[int, int, int, int]


class Target:
    """What to explain in a model's output, and the model's confidence in it.

    Subclasses set ``kind`` and implement [score][ucag.targets.Target.score] and
    [confidence][ucag.targets.Target.confidence] on a batch of output rows;
    [check][ucag.targets.Target.check] validates the output's shape before any work.
    """

    #: The registered name of the target's kind (``TARGET_KINDS``).
    kind: ClassVar[str] = ""
    #: The class or category the target follows, where it has one (None otherwise).
    category: int | None
    #: What a base method follows for the gradient: the target itself (None), or the user's
    #: own pytorch-grad-cam object it was translated from.
    gradient_target: Any

    def check(self, output: torch.Tensor, argument: str = "targets") -> None:
        """Check that the model's output fits the target, before any patch runs.

        Each kind raises a ValueError naming ``argument`` when ``output`` does not fit; the
        base class accepts any output.

        Args:
            output: The model's output (n, ...), one row per input.
            argument: The name of the user's argument, which error messages start with.
        """

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """The differentiable score of every row of ``output``, whose gradient a base method follows.

        Args:
            output: The model's output (n, ...), one row per input.

        Returns:
            The scores (n,).
        """
        raise NotImplementedError

    def confidence(self, output: torch.Tensor) -> torch.Tensor:
        """The model's confidence in the target for every row of ``output``.

        Args:
            output: The model's output (n, ...), one row per input.

        Returns:
            The confidences (n,), float32 in [0, 1].
        """
        raise NotImplementedError

    def on_patch(self, box: Box, image_size: tuple[int, int]) -> Target:
        """The target on one patch of an image.

        Args:
            box: The patch in image pixels: (top, left, height, width).
            image_size: The image's (H, W).

        Returns:
            The target on the patch: itself for every kind without a spatial extent.
        """
        return self

    def present(self) -> bool:
        """Whether the target has anything on this patch.

        A patch where it has nothing (a segmentation mask without pixels there) weighs 0
        whatever the weighting (docs/algorithm.md §3.1).

        Returns:
            True, except for a target with a spatial extent and nothing on the patch.
        """
        return True

    def gradient_object(self) -> Any:
        """What the base method is handed to follow the gradient.

        Returns:
            The user's pytorch-grad-cam object the target was translated from, else this target.
        """
        return self if self.gradient_target is None else self.gradient_target

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        """The score of one row of output (pytorch-grad-cam's convention for target objects).

        Args:
            model_output: One row of the model's output, without the batch dimension.

        Returns:
            The row's score, a 0-dimensional tensor.
        """
        return self.score(model_output[None])[0]


def _output_error(target: Target, output: torch.Tensor, expected: str, argument: str) -> ValueError:
    return ValueError(
        f"{argument}: a {target.kind} target needs a model that returns {expected}; the model returned {tuple(output.shape)} for {output.shape[0]} input(s)"
    )


@dataclass(eq=False)
class ClassTarget(Target):
    """One class of (B, K) logits; its confidence is the softmax probability (the paper's).

    Args:
        category: The class index, in [0, K).
        gradient_target: What a base method follows for the gradient: None for the target
            itself, or the user's own pytorch-grad-cam object it was translated from.

    Examples:
        >>> import torch
        >>> from ucag.targets import ClassTarget
        >>> target = ClassTarget(2)
        >>> logits = torch.tensor([[1.0, 1.0, 3.0], [0.0, 0.0, 0.0]])
        >>> target.score(logits)
        tensor([3., 0.])
        >>> target.confidence(logits).round(decimals=4)  # softmax probability of class 2
        tensor([0.7870, 0.3333])
        >>> target(logits[0])  # one row, as pytorch-grad-cam calls its targets
        tensor(3.)
    """

    category: int
    gradient_target: Any = field(default=None, repr=False)
    kind: ClassVar[str] = "class"

    def check(self, output: torch.Tensor, argument: str = "targets") -> None:
        """Check that ``output`` is (B, K) floating logits with the class among them.

        Args:
            output: The model's output, one row per input.
            argument: The name of the user's argument, which error messages start with.

        Raises:
            ValueError: When ``output`` is not (B, K) floating logits, or the class is not in [0, K).
        """
        if output.dim() != 2 or not output.is_floating_point():
            raise _output_error(self, output, "(B, K) floating logits", argument)
        if not 0 <= self.category < output.shape[1]:
            raise ValueError(
                f"{argument}: class indices must lie in [0, {output.shape[1]}) for this model's {output.shape[1]} outputs, got [{self.category}]"
            )

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """The class's logit in every row.

        Args:
            output: (n, K) logits.

        Returns:
            The logits (n,).
        """
        return output[:, self.category]

    def confidence(self, output: torch.Tensor) -> torch.Tensor:
        """The class's softmax probability in every row.

        Args:
            output: (n, K) logits.

        Returns:
            The probabilities (n,), float32.
        """
        return torch.softmax(output.detach().float(), dim=1)[:, self.category]


def _single_logit(output: torch.Tensor) -> torch.Tensor:
    return output if output.dim() == 1 else output[:, 0]


@dataclass(eq=False)
class BinaryTarget(Target):
    """The positive (``category=1``) or negative (``0``) side of one logit, (B,) or (B, 1).

    Score: ``±logit`` (as grad-cam's ``BinaryClassifierOutputTarget``); confidence:
    sigmoid(logit) or 1 - sigmoid(logit).

    Args:
        category: The side: 1 (positive) or 0 (negative).
        gradient_target: What a base method follows for the gradient: None for the target
            itself, or the user's own pytorch-grad-cam object it was translated from.

    Raises:
        ValueError: When ``category`` is neither 0 nor 1.
    """

    category: int = 1
    gradient_target: Any = field(default=None, repr=False)
    kind: ClassVar[str] = "binary"

    def __post_init__(self) -> None:
        if self.category not in (0, 1):
            raise ValueError(f"targets: a binary target's side is 1 (positive) or 0 (negative), got {self.category!r}")

    def check(self, output: torch.Tensor, argument: str = "targets") -> None:
        """Check that ``output`` is one floating logit per input, (B,) or (B, 1).

        Args:
            output: The model's output, one row per input.
            argument: The name of the user's argument, which error messages start with.

        Raises:
            ValueError: When ``output`` is not one floating logit per input.
        """
        if not output.is_floating_point() or not (output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1)):
            raise _output_error(self, output, "one floating logit per input, (B,) or (B, 1)", argument)

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """The logit of every row, negated for the negative side.

        Args:
            output: (n,) or (n, 1) logits.

        Returns:
            The scores (n,).
        """
        logit = _single_logit(output)
        return logit if self.category == 1 else -logit

    def confidence(self, output: torch.Tensor) -> torch.Tensor:
        """sigmoid(logit) for the positive side, 1 - sigmoid(logit) for the negative one.

        Args:
            output: (n,) or (n, 1) logits.

        Returns:
            The confidences (n,), float32.
        """
        return torch.sigmoid(self.score(output.detach().float()))


@dataclass(eq=False)
class MultiLabelTarget(Target):
    """One class of (B, K) independent logits (a sigmoid head): score its logit, confidence
    sigmoid(logit).

    Args:
        category: The class index, in [0, K).
        gradient_target: What a base method follows for the gradient: None for the target
            itself, or the user's own pytorch-grad-cam object it was translated from.
    """

    category: int
    gradient_target: Any = field(default=None, repr=False)
    kind: ClassVar[str] = "multilabel"

    def check(self, output: torch.Tensor, argument: str = "targets") -> None:
        """Check that ``output`` is (B, K) floating logits with the class among them.

        Args:
            output: The model's output, one row per input.
            argument: The name of the user's argument, which error messages start with.

        Raises:
            ValueError: When ``output`` is not (B, K) floating logits, or the class is not in [0, K).
        """
        ClassTarget.check(self, output, argument)  # type: ignore[arg-type]

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """The class's logit in every row.

        Args:
            output: (n, K) logits.

        Returns:
            The logits (n,).
        """
        return output[:, self.category]

    def confidence(self, output: torch.Tensor) -> torch.Tensor:
        """The sigmoid of the class's logit in every row.

        Args:
            output: (n, K) logits.

        Returns:
            The confidences (n,), float32.
        """
        return torch.sigmoid(output.detach().float()[:, self.category])


@dataclass(eq=False)
class SegmentationTarget(Target):
    """A category of (B, K, H', W') dense logits over a mask given in image coordinates.

    The mask (H, W), bool or float in [0, 1], is resampled to the output's (H', W') by
    area averaging when it is read; on a patch it is first cropped to the patch's box. Score:
    the category's output summed over the mask pixels (grad-cam's
    ``SemanticSegmentationTarget``); confidence: the category's softmax probability averaged
    over them, 0 for a patch with no mask pixels (docs/algorithm.md §3.1).

    Args:
        category: The category (output channel), in [0, K).
        mask: The region to explain, (H, W) in image coordinates, bool or float in [0, 1]
            (a tensor or anything numpy reads); kept as a float32 tensor.
        gradient_target: What a base method follows for the gradient: None for the target
            itself, or the user's own pytorch-grad-cam object it was translated from.

    Raises:
        ValueError: When ``mask`` is not a non-empty (H, W) array, or holds values outside [0, 1].
    """

    category: int
    mask: torch.Tensor = field(repr=False)
    gradient_target: Any = field(default=None, repr=False)
    kind: ClassVar[str] = "segmentation"

    def __post_init__(self) -> None:
        mask = torch.as_tensor(np.asarray(self.mask) if not isinstance(self.mask, torch.Tensor) else self.mask)
        if mask.dim() != 2 or mask.shape[0] == 0 or mask.shape[1] == 0:
            raise ValueError(
                f"targets: a segmentation mask is (H, W) in image coordinates, got shape {tuple(mask.shape)}"
            )
        mask = mask.detach().float()
        if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise ValueError("targets: a segmentation mask holds values in [0, 1] (bool or float)")
        self.mask = mask
        self._resampled: dict[tuple[tuple[int, int], torch.device], torch.Tensor] = {}

    def check(self, output: torch.Tensor, argument: str = "targets") -> None:
        """Check that ``output`` is (B, K, H', W') dense floating logits with the category among them.

        Args:
            output: The model's output, one row per input.
            argument: The name of the user's argument, which error messages start with.

        Raises:
            ValueError: When ``output`` is not (B, K, H', W') floating logits, or the category is not in [0, K).
        """
        if output.dim() != 4 or not output.is_floating_point():
            raise _output_error(self, output, "(B, K, H, W) dense floating logits", argument)
        if not 0 <= self.category < output.shape[1]:
            raise ValueError(
                f"{argument}: segmentation category {self.category} is outside this model's {output.shape[1]} output channels"
            )

    def check_image(self, image_size: tuple[int, int], argument: str = "targets") -> None:
        """Check that the mask covers the image pixel for pixel and holds at least one pixel.

        Args:
            image_size: The images' (H, W).
            argument: The name of the user's argument, which error messages start with.

        Raises:
            ValueError: When the mask's shape is not ``image_size``, or the mask is all zero.
        """
        if tuple(self.mask.shape) != tuple(image_size):
            raise ValueError(
                f"{argument}: the segmentation mask is {tuple(self.mask.shape)}, the images are {tuple(image_size)}; give the mask in image coordinates"
            )
        if not (self.mask > 0).any():
            raise ValueError(
                f"{argument}: the segmentation mask of category {self.category} is empty (all zero); there is nothing to explain"
            )

    def mask_for(self, output: torch.Tensor) -> torch.Tensor:
        """The mask resampled (area) to the output's spatial size, on its device.

        Args:
            output: Dense output (n, K, H', W').

        Returns:
            The mask (H', W'), float32 (cached per size and device).
        """
        key = (tuple(output.shape[-2:]), output.device)
        if key not in self._resampled:
            size = key[0]
            mask = (
                self.mask
                if tuple(self.mask.shape) == size
                else F.interpolate(self.mask[None, None], size=size, mode="area")[0, 0]
            )
            self._resampled[key] = mask.to(output.device)  # type: ignore[index]
        return self._resampled[key]  # type: ignore[index]

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """The category's output summed over the mask, in every row.

        Args:
            output: Dense logits (n, K, H', W').

        Returns:
            The scores (n,).
        """
        return (output[:, self.category] * self.mask_for(output).to(output.dtype)).sum(dim=(-2, -1))

    def confidence(self, output: torch.Tensor) -> torch.Tensor:
        """The category's softmax probability averaged over the mask, in every row.

        Args:
            output: Dense logits (n, K, H', W').

        Returns:
            The confidences (n,), float32; 0 where the mask has no pixels.
        """
        mask = self.mask_for(output)
        area = mask.sum()
        if area <= 0:
            return torch.zeros(output.shape[0], device=output.device)
        probability = torch.softmax(output.detach().float(), dim=1)[:, self.category]
        return (probability * mask).sum(dim=(-2, -1)) / area

    def present(self) -> bool:
        """Whether the mask has any pixel (on a patch: inside the patch).

        Returns:
            True when the mask has a nonzero pixel.
        """
        return bool((self.mask > 0).any())

    def on_patch(self, box: Box, image_size: tuple[int, int]) -> Target:
        """The target with its mask cropped to one patch.

        Args:
            box: The patch in image pixels: (top, left, height, width).
            image_size: The image's (H, W) (the mask already covers it).

        Returns:
            A segmentation target of the same category over the cropped mask (without the
                user's grad-cam object: the patch's mask differs from the image's).
        """
        top, left, height, width = box
        return SegmentationTarget(self.category, self.mask[top : top + height, left : left + width])


@dataclass(eq=False)
class SimilarityTarget(Target):
    """A concept vector (D,) for a model that returns (B, D) embeddings: score the cosine
    similarity of each embedding to the concept, confidence (1 + cos) / 2.

    Args:
        concept: The concept, a nonzero finite float vector (D,) (a tensor or anything
            ``torch.as_tensor`` reads).
        gradient_target: What a base method follows for the gradient: None for the target
            itself, or the user's own pytorch-grad-cam object.

    Raises:
        ValueError: When ``concept`` is not a nonzero finite floating-point vector (D,).
    """

    concept: torch.Tensor = field(repr=False)
    gradient_target: Any = field(default=None, repr=False)
    category: int | None = field(default=None, init=False)
    kind: ClassVar[str] = "similarity"

    def __post_init__(self) -> None:
        concept = torch.as_tensor(self.concept).detach()
        if (
            concept.dim() != 1
            or not concept.is_floating_point()
            or not torch.isfinite(concept).all()
            or concept.norm() == 0
        ):
            raise ValueError(
                f"targets: a similarity concept is a nonzero finite float vector (D,), got {concept.dtype} of shape {tuple(concept.shape)}"
            )
        self.concept = concept

    def check(self, output: torch.Tensor, argument: str = "targets") -> None:
        """Check that ``output`` is (B, D) floating embeddings of the concept's size.

        Args:
            output: The model's output, one row per input.
            argument: The name of the user's argument, which error messages start with.

        Raises:
            ValueError: When ``output`` is not (B, D) floating embeddings with D the concept's size.
        """
        if output.dim() != 2 or output.shape[1] != self.concept.shape[0] or not output.is_floating_point():
            raise _output_error(
                self, output, f"(B, {self.concept.shape[0]}) floating embeddings (the concept's size)", argument
            )

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """The cosine similarity of every embedding to the concept.

        Args:
            output: (n, D) embeddings.

        Returns:
            The similarities (n,), in [-1, 1].
        """
        return F.cosine_similarity(output, self.concept.to(output.device, output.dtype)[None], dim=1)

    def confidence(self, output: torch.Tensor) -> torch.Tensor:
        """(1 + cos) / 2 of every embedding's cosine similarity to the concept.

        Args:
            output: (n, D) embeddings.

        Returns:
            The confidences (n,), float32 in [0, 1].
        """
        return ((1 + self.score(output.detach().float())) / 2).clamp(0, 1)


@dataclass(eq=False)
class ScoreTarget(Target):
    """Any scoring function: ``score(output) -> (n,)`` on a batch of output rows, with
    ``confidence(output) -> (n,)`` in [0, 1], which UCAG needs to weight the patches.

    Args:
        score_fn: The differentiable score of a batch of output rows, ``(n, ...) -> (n,)``.
        confidence_fn: The model's confidence in the target for a batch of (detached) output
            rows, ``(n, ...) -> (n,)`` in [0, 1].
        gradient_target: What a base method follows for the gradient: None for the target
            itself, or the user's own pytorch-grad-cam object.
    """

    score_fn: Callable[[torch.Tensor], torch.Tensor]
    confidence_fn: Callable[[torch.Tensor], torch.Tensor]
    gradient_target: Any = field(default=None, repr=False)
    category: int | None = field(default=None, init=False)
    kind: ClassVar[str] = "score"

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """``score_fn(output)``.

        Args:
            output: The model's output (n, ...).

        Returns:
            The scores (n,).
        """
        return self.score_fn(output)

    def confidence(self, output: torch.Tensor) -> torch.Tensor:
        """``confidence_fn(output)`` on the detached output, checked.

        Args:
            output: The model's output (n, ...).

        Returns:
            The confidences (n,), float32 in [0, 1].

        Raises:
            ValueError: When ``confidence_fn`` does not give n finite values in [0, 1].
        """
        value = torch.as_tensor(self.confidence_fn(output.detach())).float().reshape(-1)
        if value.shape[0] != output.shape[0] or not torch.isfinite(value).all() or value.min() < 0 or value.max() > 1:
            raise ValueError(
                f"targets: a score target's confidence must give {output.shape[0]} values in [0, 1], got {tuple(value.shape)} in [{value.min().item():.3g}, {value.max().item():.3g}]"
            )
        return value


#: Every kind of target, by name (a new kind is one entry here).
TARGET_KINDS: dict[str, type[Target]] = {
    cls.kind: cls
    for cls in (ClassTarget, BinaryTarget, MultiLabelTarget, SegmentationTarget, SimilarityTarget, ScoreTarget)
}


def _segmentation_from_gradcam(obj: Any) -> Target:
    mask = obj.mask
    return SegmentationTarget(int(obj.category), mask, gradient_target=None)


#: pytorch-grad-cam 1.5.7's target classes (by name): a translation to a target, or the one-line
#: reason UCAG refuses it. A translated target keeps the user's object for the gradient
#: where it applies to a patch unchanged.
GRADCAM_TARGETS: dict[str, Callable[[Any], Target] | str] = {
    "ClassifierOutputTarget": lambda t: ClassTarget(int(t.category), gradient_target=t),
    "ClassifierOutputSoftmaxTarget": lambda t: ClassTarget(int(t.category), gradient_target=t),
    "ClassifierOutputReST": lambda t: ClassTarget(int(t.category), gradient_target=t),
    "FinerWeightedTarget": lambda t: ClassTarget(int(t.main_category), gradient_target=t),
    "BinaryClassifierOutputTarget": lambda t: BinaryTarget(1 if t.category == 1 else 0, gradient_target=t),
    "SemanticSegmentationTarget": _segmentation_from_gradcam,
    "RawScoresOutputTarget": "it scores every output at once and names no class, so UCAG has no confidence to weight the patches by; pass the class (ClassifierOutputTarget) or a ucag.targets.ScoreTarget",
    "SoftmaxOutputTarget": "it scores every class at once and names none, so UCAG has no confidence to weight the patches by; pass the class (ClassifierOutputSoftmaxTarget)",
    "FasterRCNNBoxScoreTarget": "detection is not supported: a detector's boxes do not carry over to patches, and no real detector is available to verify a translation (docs/algorithm.md §3.1)",
}


def as_target(target: Any, output: torch.Tensor, confidence: str = "softmax", argument: str = "targets") -> Target:
    """The [Target][ucag.targets.Target] for one image, from what the user gave.

    An int is a class of (B, K) logits (softmax, or sigmoid with ``confidence="sigmoid"``)
    and the side of a single-logit output (B,) or (B, 1). A pytorch-grad-cam target object
    is translated per ``GRADCAM_TARGETS`` (or refused with the reason).

    Args:
        target: An int (or integer scalar tensor), a ``ucag.targets`` object (returned as
            it is), a pytorch-grad-cam target object, or a callable target object of the
            user's own with an integer ``category``, read as that class.
        output: One row (or more) of the model's output, which tells what an int means.
        confidence: ``"softmax"`` or ``"sigmoid"``: the head a class index refers to.
        argument: The name of the user's argument, which error messages start with.

    Returns:
        The target.

    Raises:
        ValueError: When an int is neither 0 nor 1 for a single-logit output.
        TypeError: For a pytorch-grad-cam target UCAG does not support, a bare scoring
            function (no confidence), or anything else that is not a target.

    Examples:
        >>> import torch
        >>> from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
        >>> as_target(BinaryClassifierOutputTarget(0), torch.zeros(1, 1)).kind
        'binary'
        >>> as_target(3, torch.zeros(1, 10), confidence="sigmoid")
        MultiLabelTarget(category=3)
    """
    if isinstance(target, Target):
        return target
    if isinstance(target, (int, np.integer)) or (
        isinstance(target, torch.Tensor) and target.numel() == 1 and not target.is_floating_point()
    ):
        index = int(target.item() if isinstance(target, torch.Tensor) else target)
        if _is_single_logit(output):
            if index not in (0, 1):
                raise ValueError(
                    f"{argument}: this model returns one logit per input (a binary classifier), so a target is its side, 1 (positive) or 0 (negative); got {index}"
                )
            return BinaryTarget(index)
        return MultiLabelTarget(index) if confidence == "sigmoid" else ClassTarget(index)
    name = type(target).__name__
    if (type(target).__module__ or "").startswith("pytorch_grad_cam") and name in GRADCAM_TARGETS:
        translation = GRADCAM_TARGETS[name]
        if isinstance(translation, str):
            raise TypeError(f"{argument}: {name} is not supported by UCAG: {translation}")
        translated = translation(target)
        if confidence == "sigmoid" and isinstance(translated, ClassTarget):
            return MultiLabelTarget(translated.category, gradient_target=translated.gradient_target)
        return translated
    category = getattr(target, "category", None)
    if callable(target) and is_int(category):
        # a class target object of the user's own (grad-cam's convention): its category gives
        # the confidence, the object itself the gradient
        return (MultiLabelTarget if confidence == "sigmoid" else ClassTarget)(int(category), gradient_target=target)
    if callable(target):
        raise TypeError(
            f"{argument}: UCAG weights each patch by the model's confidence in the target, which a bare scoring function ({name}) does not give; "
            "wrap it as ucag.targets.ScoreTarget(score_fn, confidence_fn) with confidence_fn(output) -> values in [0, 1]"
        )
    raise TypeError(
        f"{argument}: expected class indices, ucag.targets objects or pytorch-grad-cam target objects, got {name}"
    )


def _is_single_logit(output: torch.Tensor) -> bool:
    return output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1)


def model_output(output: Any, rows: int, argument: str = "model") -> torch.Tensor:
    """The tensor in a model's output, checked to hold one row per input.

    The tensor is the output itself, its ``logits`` (or ``out``) entry or attribute, or the
    first element of a tuple or list (``ucag._inputs.logits_of``).

    Args:
        output: What the model returned.
        rows: The number of inputs.
        argument: The name of the user's argument, which error messages start with.

    Returns:
        The output tensor (rows, ...).

    Raises:
        TypeError: When the output holds no tensor where one is looked for.
        ValueError: When the tensor does not have one row per input.
    """
    tensor = logits_of(output, argument)
    if tensor.dim() == 0 or tensor.shape[0] != rows:
        raise ValueError(f"{argument}: must return one output row per input ({rows}), got shape {tuple(tensor.shape)}")
    return tensor


def predicted(output: torch.Tensor, confidence: str = "softmax", argument: str = "targets") -> list[Target]:
    """The targets ``targets=None`` means: the model's prediction on each input.

    Args:
        output: The model's output on the images, one row per image.
        confidence: ``"softmax"`` (class targets) or ``"sigmoid"`` (multi-label targets) for
            (B, K) logits.
        argument: The name of the user's argument, which error messages start with.

    Returns:
        One target per row: the predicted side of a single logit (positive where the logit
            is > 0), the top class of (B, K) logits.

    Raises:
        ValueError: For outputs where no prediction is defined (dense outputs, embeddings, integers).

    Examples:
        >>> import torch
        >>> from ucag.targets import predicted
        >>> predicted(torch.tensor([[0.1, 2.0], [3.0, 0.0]]))
        [ClassTarget(category=1), ClassTarget(category=0)]
        >>> predicted(torch.tensor([-1.0, 2.0]))
        [BinaryTarget(category=0), BinaryTarget(category=1)]
    """
    if _is_single_logit(output) and output.is_floating_point():
        return [BinaryTarget(int(v > 0)) for v in output.reshape(-1).tolist()]
    if output.dim() == 2 and output.is_floating_point():
        ids = output.argmax(dim=1).tolist()
        return [MultiLabelTarget(i) if confidence == "sigmoid" else ClassTarget(i) for i in ids]
    raise ValueError(
        f"{argument}: the model returns {tuple(output.shape)}, which has no predicted class; give one target per image "
        "(e.g. ucag.targets.SegmentationTarget(category, mask) for dense outputs, SimilarityTarget(concept) for embeddings)"
    )


def resolve(
    model: nn.Module, x: torch.Tensor, targets: Any, confidence: str = "softmax", argument: str = "targets"
) -> list[Target]:
    """One checked [Target][ucag.targets.Target] per image of ``x``.

    One forward (of all images for None, else of the first) checks that the output fits
    every target; segmentation masks are checked against the image size. Nothing is
    computed on the patches before this passes.

    Args:
        model: The model.
        x: The images (B, C, H, W).
        targets: None (the model's prediction), a 1-D integer tensor, or a list of ints,
            ``ucag.targets`` objects and pytorch-grad-cam target objects, one per image.
        confidence: ``"softmax"`` or ``"sigmoid"``: the head a class index refers to.
        argument: The name of the user's argument, which error messages start with.

    Returns:
        The targets, one per image.

    Raises:
        TypeError: When ``targets`` is a floating-point or multi-dimensional tensor, not a
            list, or holds something that is not a target (see
            [as_target][ucag.targets.as_target]).
        ValueError: When the number of targets is not B, or a target does not fit the
            model's output or the image size.
    """
    B = x.shape[0]
    if targets is None:
        with torch.no_grad():
            return predicted(model_output(model(x), B), confidence, argument)
    if isinstance(targets, torch.Tensor):
        if targets.is_floating_point() or targets.dim() != 1:
            raise TypeError(
                f"{argument}: expected a 1-D integer tensor, got {targets.dtype} of shape {tuple(targets.shape)}"
            )
        items: list[Any] = targets.tolist()
    elif isinstance(targets, (str, bytes, Mapping)) or not isinstance(targets, (Sequence, np.ndarray)):
        raise TypeError(f"{argument}: expected a list with one target per image, got {type(targets).__name__}")
    else:
        items = list(targets)
    if len(items) != B:
        raise ValueError(f"{argument}: got {len(items)} targets for {B} images; give one per image (or None)")
    with torch.no_grad():
        output = model_output(model(x[:1]), 1)
    resolved = [as_target(t, output, confidence, argument) for t in items]
    for t in resolved:
        t.check(output, argument)
        if isinstance(t, SegmentationTarget):
            t.check_image((x.shape[-2], x.shape[-1]), argument)
    return resolved


def is_class_only(targets: Sequence[Target]) -> bool:
    """Whether every target is a softmax class (UCAG's original, Rust-weighted path).

    Args:
        targets: The targets.

    Returns:
        True when every target is exactly a [ClassTarget][ucag.targets.ClassTarget].
    """
    return all(type(t) is ClassTarget for t in targets)


def patch_boxes(offsets_y: Sequence[int], offsets_x: Sequence[int], patch_size: tuple[int, int]) -> list[Box]:
    """The grid's patch boxes in the order of its patches (row-major).

    Args:
        offsets_y: The patches' top offsets, in pixels.
        offsets_x: The patches' left offsets, in pixels.
        patch_size: The patches' (h, w).

    Returns:
        The boxes (top, left, h, w).

    Examples:
        >>> from ucag.targets import patch_boxes
        >>> patch_boxes([0, 16], [0, 16], (32, 32))
        [(0, 0, 32, 32), (0, 16, 32, 32), (16, 0, 32, 32), (16, 16, 32, 32)]
    """
    return [(y, x, patch_size[0], patch_size[1]) for y in offsets_y for x in offsets_x]


def row_confidence(targets: Sequence[Target], output: torch.Tensor) -> torch.Tensor:
    """The confidence of each row of ``output`` in its own target.

    Consecutive rows that share one target object are scored together.

    Args:
        targets: One target per row.
        output: The model's output (n, ...).

    Returns:
        The confidences (n,), float32.
    """
    values = torch.empty(len(targets), dtype=torch.float32, device=output.device)
    start = 0
    while start < len(targets):
        stop = start + 1
        while stop < len(targets) and targets[stop] is targets[start]:
            stop += 1
        values[start:stop] = targets[start].confidence(output[start:stop]).float()
        start = stop
    return values


def confidence_weights(
    probabilities: torch.Tensor, weighting: str, present: torch.Tensor | None = None
) -> torch.Tensor:
    """The patch weights of docs/algorithm.md §3 from given confidences.

    Args:
        probabilities: The confidences p (n,).
        weighting: ``"exp"`` (exp(p)), ``"prob"`` (p); anything else (``"uniform"``) gives 1.
        present: Whether the target is present on each patch (n,) bool; None for everywhere.

    Returns:
        The weights (n,): exp(p), p or 1 per patch, 0 where the target is not ``present``
            (§3.1).

    Examples:
        >>> import torch
        >>> from ucag.targets import confidence_weights
        >>> confidence_weights(torch.tensor([0.0, 1.0]), "exp", torch.tensor([True, False]))
        tensor([1., 0.])
        >>> confidence_weights(torch.tensor([0.5, 1.0]), "prob")
        tensor([0.5000, 1.0000])
    """
    if weighting == "exp":
        weights = probabilities.exp()
    elif weighting == "prob":
        weights = probabilities.clone()
    else:
        weights = torch.ones_like(probabilities)
    return weights if present is None else torch.where(present.to(weights.device), weights, torch.zeros_like(weights))


def describe(target: Target) -> str:
    """A short label for a target, for titles and reprs.

    Args:
        target: The target.

    Returns:
        The label, e.g. ``"class 3"``, ``"binary negative"`` or ``"segmentation 3 (16 px)"``.

    Examples:
        >>> from ucag.targets import BinaryTarget, ClassTarget, describe
        >>> describe(ClassTarget(3)), describe(BinaryTarget(0))
        ('class 3', 'binary negative')
    """
    if isinstance(target, SimilarityTarget):
        return f"similarity (D={target.concept.shape[0]})"
    if isinstance(target, SegmentationTarget):
        return f"segmentation {target.category} ({int((target.mask > 0).sum())} px)"
    if isinstance(target, BinaryTarget):
        return "binary " + ("positive" if target.category == 1 else "negative")
    side = "" if target.category is None else f" {target.category}"
    return f"{target.kind}{side}"

"""Shared test set-up: the path to the independent reference, the float32 tolerance for
results computed at different batch sizes, and an emulation of batch-size-dependent CPU
arithmetic.

Why a tolerance across batch sizes: PyTorch does not promise bit-equal results when the
same rows run in batches of another size. oneDNN picks its convolution kernels by shape and
by the CPU's instruction set (AVX2, AVX-512, AMX), so on some hosts a row's logits differ in
the last bit between a batch of 1 and a batch of 8. Tests that compare batch sizes, chunk
sizes or thread counts carry the ``batch_comparison`` marker and compare with
:func:`assert_close_across_batches`; bit-exact assertions are kept where the same inputs run
in the same batch on the same kernel path.

``UCAG_TEST_BATCH_JITTER=N`` makes every convolution and linear layer's float output depend
on the batch size by up to N units in float32's last place (a fixed pattern per output
shape: the same batch gives the same result, another batch size another rounding), as such
a host does; N=4 is the size measured on the sample model (logits of one patch alone and in
a batch of 8 differ by ~1e-6 relative). ``./dev test`` runs its portable pass under N=4, so
a bit-exact claim across batches fails on every machine, not only on the hosts whose
kernels differ; the ``batch_comparison`` tolerances hold up to N=64.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

# The independent reference of docs/algorithm.md lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))


def assert_close_across_batches(actual: Any, expected: Any, *, rtol: float = 1e-4) -> None:
    """``actual`` equals ``expected`` up to float32 rounding that depends on the batch size.

    The error is measured against the largest magnitude of ``expected``: rounding of the
    logits moves every patch weight by a relative ~1e-7, and a partial map's gradients by
    ~1e-6 of their scale, which a per-pixel relative tolerance misreads where a map crosses
    zero. ``rtol=1e-4`` is ~800 units in float32's last place, three orders of magnitude
    below the smallest real change these tests guard against (a wrong patch weight, a
    shifted patch, dropout or batch statistics: 1e-2 and more)."""
    actual_t = torch.as_tensor(actual).detach().cpu().double()
    expected_t = torch.as_tensor(expected).detach().cpu().double()
    assert actual_t.shape == expected_t.shape, f"shapes differ: {tuple(actual_t.shape)} vs {tuple(expected_t.shape)}"
    assert torch.isfinite(actual_t).all() and torch.isfinite(expected_t).all()
    scale = float(expected_t.abs().max().clamp_min(1e-30))
    error = float((actual_t - expected_t).abs().max()) / scale
    assert error <= rtol, f"largest difference {error:.3g} of the largest magnitude > {rtol}"


def _jittered(op: Callable[..., torch.Tensor], ulps: float) -> Callable[..., torch.Tensor]:
    size = ulps * torch.finfo(torch.float32).eps

    def run(input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = op(input, *args, **kwargs)
        if not out.is_floating_point() or out.dim() == 0:
            return out
        # one pattern per output shape, hence per batch size: a batch run twice rounds the same.
        # Drawn over the last two dimensions (a map's rows and columns, a linear layer's
        # features) and broadcast over the batch and the channels: drawing one number per
        # element doubled the time of every convolution.
        pattern = torch.Generator().manual_seed(hash(tuple(out.shape)) % (2**31))
        tail = tuple(out.shape[-2:]) if out.dim() >= 3 else tuple(out.shape[-1:])
        noise = torch.rand(tail, generator=pattern, dtype=torch.float32).to(device=out.device, dtype=out.dtype)
        return out * (1 + size * (2 * noise - 1))

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the pretrained sample model (through the ``sample_model`` fixture, directly or
    by another fixture) are end-to-end checks: marked ``pretrained``, which the quick tier
    (``./dev test --quick``) leaves out."""
    for item in items:
        if "sample_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pretrained)


def pytest_configure(config: pytest.Config) -> None:
    # before collection: test modules compute maps at import, fixtures of every scope later
    ulps = float(os.environ.get("UCAG_TEST_BATCH_JITTER", "0"))
    if ulps > 0:
        for name in ("conv2d", "linear"):
            setattr(F, name, _jittered(getattr(F, name), ulps))


# ---- shared fixtures: the pretrained sample model and the bundled photos, loaded once ------


def _model_state(model: torch.nn.Module) -> tuple[Any, ...]:
    """What a call must leave as it was: every module's mode and hooks, every flag."""
    return (
        tuple(m.training for m in model.modules()),
        tuple(p.requires_grad for p in model.parameters()),
        tuple(
            len(getattr(m, name))
            for m in model.modules()
            for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
        ),
    )


@pytest.fixture(scope="session")
def sample_model() -> Any:
    """The pretrained EfficientNet-Lite0 (:func:`ucag.data.load_sample_model`), loaded once
    per session and shared by every test that asks for it (through module fixtures too)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from ucag.data import load_sample_model

    return load_sample_model()


@pytest.fixture(autouse=True)
def _shared_model_unchanged(request: pytest.FixtureRequest) -> Any:
    """A test that leaves the shared sample model's modes, flags, hooks or weights changed
    fails, as every ucag entry point promises to leave a model as it found it."""
    if "sample_model" not in request.fixturenames:
        yield
        return
    model = request.getfixturevalue("sample_model").model
    state, weights = _model_state(model), [p.detach().clone() for p in model.parameters()]
    yield
    assert _model_state(model) == state, "the test left the shared sample model's modes, flags or hooks changed"
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), weights, strict=True)), (
        "the test changed the shared sample model's weights"
    )


#: The bundled photos the tests use, by name (ucag.data.SAMPLE_PHOTOS).
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="session")
def photos(sample_model: Any) -> dict[str, torch.Tensor]:
    """Each photo of :data:`PHOTOS` as the sample model's (1, 3, 224, 224) input."""
    from ucag.data import sample_image

    return {name: sample_model.preprocess(sample_image(name).rgb) for name in PHOTOS}

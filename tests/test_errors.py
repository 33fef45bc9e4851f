"""Bad input raises ValueError/TypeError/MemoryError naming the argument; nothing crashes."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ucag
from ucag import runtime

GRID = ucag.Grid((32, 40), units=3)
N = GRID.num_patches
GOOD_IMAGES = torch.rand(2, 3, 32, 40)
GOOD_MAPS = torch.rand(2 * N, 7, 7)
GOOD_WEIGHTS = torch.rand(2 * N)


def with_value(t, value):
    t = t.clone()
    t.view(-1)[3] = value
    return t


UNFOLD_CASES = [
    ("3-D tensor", torch.rand(3, 32, 40), ValueError),
    ("5-D tensor", torch.rand(1, 2, 3, 32, 40), ValueError),
    ("integer tensor", torch.ones(2, 3, 32, 40, dtype=torch.int64), TypeError),
    ("bool tensor", torch.ones(2, 3, 32, 40, dtype=torch.bool), TypeError),
    ("complex tensor", torch.ones(2, 3, 32, 40, dtype=torch.complex64), TypeError),
    ("NaN", with_value(GOOD_IMAGES, float("nan")), ValueError),
    ("Inf", with_value(GOOD_IMAGES, float("inf")), ValueError),
    ("empty batch", torch.rand(0, 3, 32, 40), ValueError),
    ("no channels", torch.rand(2, 0, 32, 40), ValueError),
    ("size mismatch", torch.rand(2, 3, 40, 32), ValueError),
    ("meta tensor", torch.empty(2, 3, 32, 40, device="meta"), ValueError),
    ("sparse tensor", torch.rand(2, 3, 32, 40).to_sparse(), TypeError),
    ("numpy int", np.ones((2, 3, 32, 40), dtype=np.int32), TypeError),
    ("numpy 3-D", np.ones((3, 32, 40), dtype=np.float32), ValueError),
    ("numpy NaN", with_value(GOOD_IMAGES, float("nan")).numpy(), ValueError),
    ("numpy empty", np.ones((0, 3, 32, 40), dtype=np.float64), ValueError),
    ("list", [[1.0, 2.0]], TypeError),
    ("None", None, TypeError),
]


@pytest.mark.parametrize("label,images,exc", UNFOLD_CASES, ids=[c[0] for c in UNFOLD_CASES])
def test_unfold_rejects(label, images, exc):
    with pytest.raises(exc, match="images"):
        ucag.unfold(images, GRID)


def test_unfold_rejects_a_non_grid():
    with pytest.raises(TypeError):
        ucag.unfold(GOOD_IMAGES, (32, 40))


FOLD_CASES = [
    ("maps 2-D", torch.rand(2 * N, 49), GOOD_WEIGHTS, "maps", ValueError),
    ("maps 4-D with 3 channels", torch.rand(2 * N, 3, 7, 7), GOOD_WEIGHTS, "maps", ValueError),
    ("rows not a multiple of N", torch.rand(2 * N - 1, 7, 7), torch.rand(2 * N - 1), "maps", ValueError),
    ("rows mismatch", GOOD_MAPS, torch.rand(2 * N + 1), "weights", ValueError),
    ("weights 2-D", GOOD_MAPS, torch.rand(2 * N, 1), "weights", ValueError),
    ("empty maps", torch.rand(0, 7, 7), torch.rand(0), "maps", ValueError),
    ("zero-size maps", torch.rand(2 * N, 0, 7), GOOD_WEIGHTS, "maps", ValueError),
    ("integer maps", torch.ones(2 * N, 7, 7, dtype=torch.int32), GOOD_WEIGHTS, "maps", TypeError),
    ("integer weights", GOOD_MAPS, torch.ones(2 * N, dtype=torch.int64), "weights", TypeError),
    ("NaN maps", with_value(GOOD_MAPS, float("nan")), GOOD_WEIGHTS, "maps", ValueError),
    ("Inf weights", GOOD_MAPS, with_value(GOOD_WEIGHTS, float("-inf")), "weights", ValueError),
    ("numpy maps, torch weights", GOOD_MAPS.numpy(), GOOD_WEIGHTS, "weights", TypeError),
    ("torch maps, numpy weights", GOOD_MAPS, GOOD_WEIGHTS.numpy(), "weights", TypeError),
    ("numpy rows mismatch", GOOD_MAPS.numpy(), np.ones(3, dtype=np.float32), "weights", ValueError),
    ("numpy NaN", with_value(GOOD_MAPS, float("nan")).numpy(), GOOD_WEIGHTS.numpy(), "maps", ValueError),
    ("numpy int weights", GOOD_MAPS.numpy(), np.ones(2 * N, dtype=np.int64), "weights", TypeError),
    ("numpy float16 maps", GOOD_MAPS.numpy().astype(np.float16), GOOD_WEIGHTS.numpy(), "maps", TypeError),
    ("meta weights", GOOD_MAPS, torch.empty(2 * N, device="meta"), "weights", ValueError),
    ("string", "maps", GOOD_WEIGHTS, "maps", TypeError),
]


@pytest.mark.parametrize("label,maps,weights,argument,exc", FOLD_CASES, ids=[c[0] for c in FOLD_CASES])
def test_fold_rejects(label, maps, weights, argument, exc):
    with pytest.raises(exc, match=argument):
        ucag.fold(maps, weights, GRID)


CONFIDENCE_CASES = [
    ("1-D logits", torch.rand(10), [1], "logits", ValueError),
    ("integer logits", torch.ones(2, 10, dtype=torch.int64), [1, 2], "logits", TypeError),
    ("NaN logits", with_value(torch.rand(2, 10), float("nan")), [1, 2], "logits", ValueError),
    ("empty logits", torch.rand(0, 10), [], "logits", ValueError),
    ("too few targets", torch.rand(3, 10), [1, 2], "targets", ValueError),
    ("target out of range", torch.rand(2, 10), [1, 10], "targets", ValueError),
    ("negative target", torch.rand(2, 10), [-1, 0], "targets", ValueError),
    ("float targets", torch.rand(2, 10), [0.5, 1.0], "targets", TypeError),
    ("float target tensor", torch.rand(2, 10), torch.tensor([0.0, 1.0]), "targets", TypeError),
    ("2-D target tensor", torch.rand(2, 10), torch.tensor([[0], [1]]), "targets", ValueError),
    ("string targets", torch.rand(2, 10), "ab", "targets", TypeError),
    ("numpy out of range", np.zeros((2, 10), np.float32), [1, 11], "targets", ValueError),
    ("numpy int logits", np.zeros((2, 10), np.int64), [1, 2], "logits", TypeError),
]


@pytest.mark.parametrize("label,logits,targets,argument,exc", CONFIDENCE_CASES, ids=[c[0] for c in CONFIDENCE_CASES])
def test_confidence_rejects(label, logits, targets, argument, exc):
    with pytest.raises(exc, match=argument):
        ucag.confidence(logits, targets)


def test_confidence_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        ucag.confidence(torch.rand(2, 10), [1, 2], mode="softmax")


def test_errors_leave_the_interpreter_usable():
    for _ in range(3):
        with pytest.raises(ValueError):
            ucag.fold(torch.rand(5, 7, 7), torch.rand(5), GRID)
    assert ucag.fold(GOOD_MAPS, GOOD_WEIGHTS, GRID).shape == (2, 32, 40)


def test_nan_the_resize_never_reads_cannot_reach_the_result():
    """Down-sampling 30 -> 6 rows reads two rows per output row; a NaN in an unread row is
    not an input to the formula: both paths return the finite reference result."""
    import spec_reference as ref

    grid = ucag.Grid((12, 12), units=2, patch_size=(6, 6))
    maps = torch.rand(4, 30, 30)
    read = set()
    for d in range(6):
        src = max(30 / 6 * (d + 0.5) - 0.5, 0.0)
        read |= {int(src), min(int(src) + 1, 29)}
    unread = min(set(range(30)) - read)
    maps[1, unread, 4] = float("nan")
    w = torch.ones(4)
    g = ref.geometry((12, 12), 2, (6, 6), scaled=grid.scaled_size)
    expected = ref.fold(maps, w, g)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(ucag.fold(maps, w, grid), expected)
    torch.testing.assert_close(torch.from_numpy(ucag.fold(maps.numpy(), w.numpy(), grid)), expected)
    maps[1, min(read), min(read)] = float("nan")  # a row and column it reads
    for m, ww in ((maps, w), (maps.numpy(), w.numpy())):
        with pytest.raises(ValueError, match="maps"):
            ucag.fold(m, ww, grid)


@pytest.mark.parametrize("label,logits,targets,argument,exc", CONFIDENCE_CASES, ids=[c[0] for c in CONFIDENCE_CASES])
def test_confidence_with_probabilities_rejects_the_same(label, logits, targets, argument, exc):
    with pytest.raises(exc, match=argument):
        ucag.confidence(logits, targets, return_probabilities=True)


def test_huge_sizes_are_errors_not_crashes():
    """Sizes whose arithmetic overflows, or whose arrays could never be allocated, raise
    ValueError naming the argument (the process neither aborts nor panics)."""
    with pytest.raises(ValueError, match="^image_size: .* more than the 9223372036854775807 elements"):
        ucag.Grid(2**62)  # 2^124 pixels
    with pytest.raises(ValueError, match="^units: must be at most 1024"):
        ucag.Grid(224, units=10**9)
    with pytest.raises(ValueError, match="^image_size: must be positive"):
        ucag.Grid(-(2**63))
    huge = ucag.Grid((2**31, 2**31), units=2, scale=1e-9)
    for maps, weights in (
        (np.ones((4, 1, 1), np.float32), np.ones(4, np.float32)),
        (torch.ones(4, 1, 1), torch.ones(4)),
    ):
        with pytest.raises(ValueError, match="^maps: .*too large to allocate"):
            ucag.fold(maps, weights, huge)


# --- Hostile sizes, each in a child interpreter --------------------------------------
#
# Before these were checked, some aborted the interpreter (Rust's allocator) instead of
# raising. An abort in a child kills the child only: the case fails, the suite goes on.

_CHILD = """
import json, os, sys
try:  # an abort here is expected to leave no core file behind
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
except (ImportError, ValueError, OSError):
    pass
import numpy as np, torch, ucag
from ucag import runtime
try:
    tch = runtime.tch_module() is not None
except Exception as err:  # UCAG_KERNELS=tch without a usable tch module
    tch = False
print(json.dumps(["(tch)", tch]), flush=True)
for case_id, code in json.loads(sys.stdin.read()):
    try:
        value = eval(code)
        result = {"returned": type(value).__name__}
    except BaseException as err:
        result = {"type": type(err).__name__, "is_exception": isinstance(err, Exception), "message": str(err)}
    print(json.dumps([case_id, result]), flush=True)
"""


def run_isolated(cases: list[tuple[str, str]], mode: str) -> dict:
    """Evaluates each ``(id, code)`` in a child interpreter under ``UCAG_KERNELS=mode``, in
    order; returns ``{id: outcome}``: ``{"returned": type name}``, ``{"type", "is_exception",
    "message"}`` for what it raised, or ``{"died": why}`` for the case running when the
    child died (a fresh child then runs the cases after it). ``"(tch)"``: whether the tch
    module is in use."""
    package_root = str(Path(ucag.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "UCAG_KERNELS": mode,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    outcomes: dict = {}
    pending = list(cases)
    while pending:
        try:
            child = subprocess.run(
                [sys.executable, "-c", _CHILD],
                input=json.dumps(pending),
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
            stdout, why = child.stdout, f"exit status {child.returncode}; stderr: {child.stderr[-3000:]}"
        except subprocess.TimeoutExpired as err:
            partial = err.stdout or ""  # bytes even with text=True on some Pythons
            stdout, why = partial.decode() if isinstance(partial, bytes) else partial, "timed out after 600 s"
        for line in stdout.splitlines():
            if line.startswith("["):
                case_id, outcome = json.loads(line)
                outcomes[case_id] = outcome
        done = [case_id in outcomes for case_id, _ in pending]
        if all(done):
            break
        died = done.index(False)
        outcomes[pending[died][0]] = {"died": why}
        pending = pending[died + 1 :]
    return outcomes


def test_run_isolated_survives_an_abort():
    outcomes = run_isolated([("abort", "os.abort()"), ("after", "ucag.Grid(64).num_patches")], "portable")
    assert "died" in outcomes["abort"]
    assert outcomes["after"] == {"returned": "int"}


TOO_MANY_PIXELS = "ucag.Grid((2**31, 2**31), units=2, scale=1e-9)"  # 2^62 pixels: no coverage or result fits
PETABYTE_GRID = "ucag.Grid((2**24, 2**24), units=2, scale=1e-9)"  # 2^48 pixels: beyond any machine's memory
# A grid within every limit whose unfold is 12 TiB: 4096 patches scaled to 16384 x 16384.
TERABYTE_UNFOLD = "ucag.Grid(64, units=64, patch_size=1, scale=2**14)"

#: (id, code, the argument the message starts with, the exceptions allowed)
HOSTILE = [
    ("units=2**62", "ucag.Grid(64, units=2**62)", "units", ValueError),
    ("units=10**9", "ucag.Grid(64, units=10**9)", "units", ValueError),
    ("units beyond int64", "ucag.Grid(64, units=2**64)", "units", ValueError),
    ("units beyond the image side", "ucag.Grid((64, 40), units=41, patch_size=1)", "units", ValueError),
    ("image_size=2**62", "ucag.Grid(2**62)", "image_size", ValueError),
    ("image_size beyond int64", "ucag.Grid(2**64)", "image_size", ValueError),
    (
        "coverage of (2**20, 2**20)",
        "ucag.Grid((2**20, 2**20)).coverage()",
        "scale",
        ValueError,
    ),  # refused at construction
    ("coverage of 1 PiB", f"{PETABYTE_GRID}.coverage()", "image_size", MemoryError),
    ("coverage beyond isize", f"{TOO_MANY_PIXELS}.coverage()", "image_size", ValueError),
    ("scale=1e300", "ucag.Grid(64, scale=1e300)", "scale", ValueError),
    ("scale beyond float", "ucag.Grid(64, scale=10**400)", "scale", ValueError),
    ("scaled_size=2**40", "ucag.Grid(64, scaled_size=2**40)", "scaled_size", ValueError),
    ("unfold 12 TiB, tensor", f"ucag.unfold(torch.zeros(1, 3, 64, 64), {TERABYTE_UNFOLD})", "images", MemoryError),
    (
        "unfold 12 TiB, numpy",
        f"ucag.unfold(np.zeros((1, 3, 64, 64), np.float32), {TERABYTE_UNFOLD})",
        "images",
        MemoryError,
    ),
    (
        "unfold resize buffer, numpy",
        "ucag.unfold(np.zeros((1, 1, 2**20, 1), np.float32), ucag.Grid((2**20, 1), units=1, patch_size=(2**20, 1), scaled_size=(1, 32768)))",
        "images",
        MemoryError,
    ),
    (
        "fold beyond isize, tensor",
        f"ucag.fold(torch.ones(4, 1, 1), torch.ones(4), {TOO_MANY_PIXELS})",
        "maps",
        ValueError,
    ),
    ("fold beyond isize, numpy", f"ucag.fold(np.ones((4, 1, 1)), np.ones(4), {TOO_MANY_PIXELS})", "maps", ValueError),
    ("fold 1 PiB, tensor", f"ucag.fold(torch.ones(4, 1, 1), torch.ones(4), {PETABYTE_GRID})", "maps", MemoryError),
    (
        "fold 1 PiB, numpy",
        f"ucag.fold(np.ones((4, 1, 1), np.float32), np.ones(4, np.float32), {PETABYTE_GRID})",
        "maps",
        MemoryError,
    ),
]


@functools.cache
def hostile_outcomes(mode: str) -> dict:
    return run_isolated([(case_id, code) for case_id, code, _, _ in HOSTILE], mode)


@pytest.mark.parametrize("mode", ["portable", "tch"])
@pytest.mark.parametrize("case_id,code,argument,exc", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_sizes_raise_a_plain_exception_naming_the_argument(mode, case_id, code, argument, exc):
    outcomes = hostile_outcomes(mode)
    if mode == "tch" and not outcomes.get("(tch)"):
        pytest.skip("the tch module is not available here")
    outcome = outcomes[case_id]
    assert "died" not in outcome, f"{code} killed the interpreter ({outcome['died']})"
    assert "returned" not in outcome, f"{code} returned a {outcome['returned']} instead of raising"
    assert outcome["is_exception"], f"{code} raised {outcome['type']}, a BaseException that `except Exception` misses"
    assert outcome["type"] == exc.__name__, outcome
    assert outcome["message"].startswith(f"{argument}: "), outcome["message"]


# --- Every failure is an Exception ------------------------------------------------------
#
# Both modules run every entry point through one guard (ucag::error::py_guard) that turns
# a panic into RuntimeError("ucag internal error: ..."): pyo3's own PanicException is a
# BaseException, which `except Exception` does not catch. No input here raises one.

GRID_CASES = [
    dict(image_size=0),
    dict(image_size=(1, 2, 3)),
    dict(image_size="big"),
    dict(image_size=2**62),
    dict(image_size=(2**64, 5)),
    dict(image_size=224, units=0),
    dict(image_size=224, units=2**64),
    dict(image_size=224, units=225),
    dict(image_size=224, units=None),
    dict(image_size=224, patch_size=300),
    dict(image_size=224, patch_size=(2**70, 3)),
    dict(image_size=224, scale=float("nan")),
    dict(image_size=224, scale=10**400),
    dict(image_size=224, scale="big"),
    dict(image_size=224, scaled_size=(0, 5)),
    dict(image_size=224, scaled_size=2**40),
]


def every_bad_call():
    for label, images, _ in UNFOLD_CASES:
        yield f"unfold {label}", functools.partial(ucag.unfold, images, GRID)
    for label, maps, weights, _, _ in FOLD_CASES:
        yield f"fold {label}", functools.partial(ucag.fold, maps, weights, GRID)
    for label, logits, targets, _, _ in CONFIDENCE_CASES:
        yield f"confidence {label}", functools.partial(ucag.confidence, logits, targets)
        yield f"confidence pair {label}", functools.partial(ucag.confidence, logits, targets, return_probabilities=True)
    yield "confidence mode", functools.partial(ucag.confidence, torch.rand(2, 10), [1, 2], mode="softmax")
    yield "unfold non-grid", functools.partial(ucag.unfold, GOOD_IMAGES, (32, 40))
    for kwargs in GRID_CASES:
        yield f"Grid {kwargs}", functools.partial(ucag.Grid, **kwargs)
    huge = ucag.Grid((2**31, 2**31), units=2, scale=1e-9)
    yield "coverage beyond isize", huge.coverage
    yield "fold beyond isize", functools.partial(ucag.fold, torch.ones(4, 1, 1), torch.ones(4), huge)


@pytest.mark.parametrize("mode", ["portable", "tch"])
def test_no_input_raises_a_base_exception_that_is_not_an_exception(mode, monkeypatch):
    monkeypatch.setenv("UCAG_KERNELS", mode)  # read at every kernel call
    if mode == "tch":
        try:
            if runtime.tch_module() is None:
                pytest.skip("the tch module is not available here")
        except RuntimeError:
            pytest.skip("the tch module is not available here")
    bad = []
    for label, call in every_bad_call():
        try:
            call()
        except Exception:
            continue
        except BaseException as err:  # what this test is about
            bad.append(f"{label}: {type(err).__name__}: {err}")
        else:
            bad.append(f"{label}: raised nothing")
    assert not bad, "\n".join(bad)

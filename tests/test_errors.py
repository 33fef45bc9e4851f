"""Bad input raises ValueError/TypeError naming the argument; nothing crashes."""

import numpy as np
import pytest
import torch

import ucag

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
    with pytest.raises(ValueError, match="scale"):
        ucag.Grid(2**62)  # 124/224 of it is the patch: exact, then too large to scale
    with pytest.raises(ValueError, match="units"):
        ucag.Grid(224, units=10**9)
    with pytest.raises(ValueError, match="image_size"):
        ucag.Grid(-(2**63))
    huge = ucag.Grid((2**31, 2**31), units=2, scale=1e-9)
    for maps, weights in ((np.ones((4, 1, 1), np.float32), np.ones(4, np.float32)), (torch.ones(4, 1, 1), torch.ones(4))):
        with pytest.raises(ValueError, match="maps"):
            ucag.fold(maps, weights, huge)

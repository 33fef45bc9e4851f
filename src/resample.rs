//! 1-D interpolation taps that reproduce PyTorch's `F.interpolate` with
//! `align_corners=False, antialias=False` and no explicit scale factor: bilinear
//! ("linear" per axis) and bicubic (Keys kernel, A = -0.75, border indices clamped).
//! A 2-D resize is the separable product of a row and a column tap table.
//!
//! Coordinates and weights are computed in the precision `C` of the data (PyTorch's
//! `opmath_t`: float32 for float32 tensors), because on a 124 -> 322 resize the rounding of
//! a float32 source coordinate moves a sample by up to 1e-5 px; computing it in f64 would
//! be "more exact" and further from `F.interpolate`.

use crate::alloc::{self, AllocError};
use num_traits::Float;

/// Taps of one output index: input indices and their weights (weights sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taps<const K: usize> {
    pub index: [usize; K],
    pub weight: [f64; K],
}

/// The Keys cubic convolution constant PyTorch uses.
const CUBIC_A: f64 = -0.75;

fn c<C: Float>(v: f64) -> C {
    C::from(v).expect("small constants are representable")
}

/// Source coordinate of output index `dst` (pixel centres, align_corners=False),
/// computed in `C` as `scale * (dst + 0.5) - 0.5` with `scale = in / out`. The multiply-add
/// is fused, as the compiler contracts it in PyTorch's CPU kernels.
fn source_coordinate<C: Float>(in_size: usize, out_size: usize, dst: usize) -> C {
    let scale = c::<C>(in_size as f64) / c::<C>(out_size as f64);
    scale.mul_add(c::<C>(dst as f64) + c(0.5), c(-0.5))
}

/// Bilinear taps for resizing an axis of `in_size` samples to `out_size`.
/// Negative source coordinates clamp to 0, as in PyTorch's linear modes. The table (one
/// entry per output index) is allocated fallibly: `out_size` comes from user sizes.
pub fn linear_taps<C: Float>(in_size: usize, out_size: usize) -> Result<Vec<Taps<2>>, AllocError> {
    assert!(in_size > 0 && out_size > 0, "axis sizes must be positive");
    let taps = (0..out_size).map(|dst| {
        let src = source_coordinate::<C>(in_size, out_size, dst).max(C::zero());
        let i0 = src.floor().to_usize().unwrap_or(0).min(in_size - 1);
        let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
        let lambda = (src - c(i0 as f64)).max(C::zero()).min(C::one());
        let weight = [C::one() - lambda, lambda].map(|w| w.to_f64().unwrap_or(f64::NAN));
        Taps {
            index: [i0, i1],
            weight,
        }
    });
    alloc::try_collect(out_size, taps)
}

fn cubic_near<C: Float>(x: C) -> C {
    let a: C = c(CUBIC_A);
    ((a + c(2.0)) * x - (a + c(3.0))) * x * x + C::one()
}

fn cubic_far<C: Float>(x: C) -> C {
    let a: C = c(CUBIC_A);
    ((a * x - c::<C>(5.0) * a) * x + c::<C>(8.0) * a) * x - c::<C>(4.0) * a
}

/// Bicubic taps for resizing an axis of `in_size` samples to `out_size`. The four
/// neighbours are clamped into [0, in_size - 1] (edge replication), as in PyTorch. The
/// table is allocated fallibly, as in `linear_taps`.
pub fn cubic_taps<C: Float>(in_size: usize, out_size: usize) -> Result<Vec<Taps<4>>, AllocError> {
    assert!(in_size > 0 && out_size > 0, "axis sizes must be positive");
    // an axis of an existing array: at most isize::MAX samples, so this fits i64
    let last = i64::try_from(in_size - 1).unwrap_or(i64::MAX);
    let taps = (0..out_size).map(|dst| {
        let src = source_coordinate::<C>(in_size, out_size, dst);
        let base = src.floor().to_i64().unwrap_or(0).min(last);
        let t = (src - c(base as f64)).max(C::zero()).min(C::one());
        let weight = [
            cubic_far(t + C::one()),
            cubic_near(t),
            cubic_near(C::one() - t),
            cubic_far(c::<C>(2.0) - t),
        ]
        .map(|w| w.to_f64().unwrap_or(f64::NAN));
        let index = [0i64, 1, 2, 3].map(|k| base.saturating_add(k - 1).clamp(0, last) as usize);
        Taps { index, weight }
    });
    alloc::try_collect(out_size, taps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn linear_downsample_by_two_averages_pairs() {
        // 4 -> 2: src = 2 * (d + 0.5) - 0.5 = 0.5, 2.5
        let taps = linear_taps::<f64>(4, 2).unwrap();
        assert_eq!(taps[0].index, [0, 1]);
        assert_eq!(taps[0].weight, [0.5, 0.5]);
        assert_eq!(taps[1].index, [2, 3]);
        assert_eq!(taps[1].weight, [0.5, 0.5]);
    }

    #[test]
    fn linear_upsample_by_two_by_hand() {
        // 2 -> 4: scale 0.5, src = 0.5 * (d + 0.5) - 0.5 = -0.25, 0.25, 0.75, 1.25
        let taps = linear_taps::<f64>(2, 4).unwrap();
        // -0.25 clamps to 0: all weight on sample 0
        assert_eq!(taps[0].index, [0, 1]);
        assert_eq!(taps[0].weight, [1.0, 0.0]);
        assert_eq!(taps[1].weight, [0.75, 0.25]);
        assert_eq!(taps[2].weight, [0.25, 0.75]);
        // 1.25: i0 = 1 is the last sample, so i1 = i0 and weight 0.25 lands on it too
        assert_eq!(taps[3].index, [1, 1]);
        assert_eq!(taps[3].weight, [0.75, 0.25]);
    }

    #[test]
    fn linear_identity_when_sizes_match() {
        for (d, t) in linear_taps::<f64>(5, 5).unwrap().iter().enumerate() {
            assert_eq!(t.index[0], d);
            assert_eq!(t.weight, [1.0, 0.0]);
        }
    }

    #[test]
    fn cubic_upsample_by_two_by_hand() {
        // 4 -> 8: src = 0.5 * (d + 0.5) - 0.5; d = 2 gives 0.75, base 0, t = 0.75.
        let taps = cubic_taps::<f64>(4, 8).unwrap();
        let t = 0.75f64;
        let a = -0.75f64;
        // Keys kernel: |x| <= 1: (a+2)|x|^3 - (a+3)|x|^2 + 1; 1 < |x| < 2: a|x|^3 - 5a|x|^2 + 8a|x| - 4a
        let far = |x: f64| a * x.powi(3) - 5.0 * a * x.powi(2) + 8.0 * a * x - 4.0 * a;
        let near = |x: f64| (a + 2.0) * x.powi(3) - (a + 3.0) * x.powi(2) + 1.0;
        let expected = [far(1.0 + t), near(t), near(1.0 - t), far(2.0 - t)];
        // worked out: -0.03515625, 0.26171875, 0.87890625, -0.10546875
        let by_hand = [-0.03515625, 0.26171875, 0.87890625, -0.10546875];
        assert_eq!(taps[2].index, [0, 0, 1, 2]); // base - 1 = -1 clamps to 0
        for k in 0..4 {
            assert_abs_diff_eq!(taps[2].weight[k], expected[k], epsilon = 1e-15);
            assert_abs_diff_eq!(taps[2].weight[k], by_hand[k], epsilon = 1e-15);
        }
        // d = 0: src = -0.25, base -1, t = 0.75; all indices clamp into the image.
        assert_eq!(taps[0].index, [0, 0, 0, 1]);
    }

    #[test]
    fn cubic_weights_sum_to_one_and_identity() {
        for (i, o) in [(7usize, 19usize), (124, 322), (322, 124), (1, 5), (5, 1)] {
            for t in cubic_taps::<f64>(i, o).unwrap() {
                assert_abs_diff_eq!(t.weight.iter().sum::<f64>(), 1.0, epsilon = 1e-12);
                assert!(t.index.iter().all(|&k| k < i));
            }
        }
        for (d, t) in cubic_taps::<f64>(6, 6).unwrap().iter().enumerate() {
            // t = 0: weights (0, 1, 0, 0) on (d-1, d, d+1, d+2)
            assert_eq!(t.weight, [0.0, 1.0, 0.0, 0.0]);
            assert_eq!(t.index[1], d);
        }
    }
}

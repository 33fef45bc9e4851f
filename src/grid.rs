//! Patch geometry of the spatial unfoldment (docs/algorithm.md section 1): patch size,
//! offsets, scaled size and the coverage ("duplication") matrix. Pure integer arithmetic.

use crate::error::UcagError;
use ndarray::Array2;

/// Patch side relative to the image side when no patch size is given: 124 px on 224 px.
const DEFAULT_PATCH_NUM: usize = 124;
const DEFAULT_PATCH_DEN: usize = 224;
/// Largest scaled patch side accepted; guards against accidental multi-GB allocations.
pub const MAX_SCALED_SIDE: usize = 1 << 15;
/// Most patches per axis accepted (units * units patches per image); guards likewise.
pub const MAX_UNITS: usize = 1 << 10;

/// A `units` x `units` grid of overlapping patches over an `image` of (H, W) pixels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grid {
    image: (usize, usize),
    units: usize,
    patch: (usize, usize),
    scaled: (usize, usize),
    offsets_y: Vec<usize>,
    offsets_x: Vec<usize>,
}

/// `round_half_up(num / den)` for non-negative integers, exactly (in u128, so no size a
/// user gives overflows it).
pub fn round_half_up_ratio(num: u128, den: u128) -> u128 {
    (2 * num + den) / (2 * den)
}

/// The default patch side for an image side: round_half_up(124/224 * side) (at most side).
fn default_patch_side(side: usize) -> usize {
    let patch = round_half_up_ratio(
        DEFAULT_PATCH_NUM as u128 * side as u128,
        DEFAULT_PATCH_DEN as u128,
    );
    usize::try_from(patch).expect("124/224 of a usize fits a usize")
}

/// Offsets `round_half_up(i * (size - patch) / (units - 1))` for i in 0..units (each at
/// most size - patch; computed in u128, so large sizes do not overflow).
pub fn axis_offsets(size: usize, patch: usize, units: usize) -> Vec<usize> {
    if units == 1 {
        return vec![0];
    }
    let free = (size - patch) as u128;
    let steps = (units - 1) as u128;
    (0..units)
        .map(|i| {
            let offset = round_half_up_ratio(i as u128 * free, steps);
            usize::try_from(offset).expect("an offset is at most size - patch")
        })
        .collect()
}

fn scaled_side(patch: usize, scale: f64) -> usize {
    let s = (scale * patch as f64 + 0.5).floor();
    if s < 1.0 {
        1
    } else {
        s as usize
    }
}

impl Grid {
    /// Builds and validates a grid. `patch` defaults to 124/224 of the image side (rounded
    /// half up); `scaled` overrides `scale`. Errors name the offending argument.
    pub fn new(
        image: (usize, usize),
        units: usize,
        patch: Option<(usize, usize)>,
        scale: f64,
        scaled: Option<(usize, usize)>,
    ) -> Result<Self, UcagError> {
        let (height, width) = image;
        if height == 0 || width == 0 {
            return Err(UcagError::value(
                "image_size",
                format!("must be positive, got ({height}, {width})"),
            ));
        }
        if units == 0 {
            return Err(UcagError::value("units", "must be at least 1, got 0"));
        }
        if units > MAX_UNITS {
            return Err(UcagError::value(
                "units",
                format!(
                    "must be at most {MAX_UNITS} ({MAX_UNITS}^2 patches per image), got {units}"
                ),
            ));
        }
        let patch = patch.unwrap_or((default_patch_side(height), default_patch_side(width)));
        let patch = (patch.0.max(1), patch.1.max(1));
        if patch.0 > height || patch.1 > width {
            return Err(UcagError::value(
                "patch_size",
                format!(
                    "({}, {}) is larger than the image ({height}, {width})",
                    patch.0, patch.1
                ),
            ));
        }
        if units == 1 && patch != image {
            return Err(UcagError::value(
                "units",
                format!(
                    "units=1 needs a patch equal to the image ({height}, {width}), got patch_size \
                     ({}, {}): the rest of the image would be uncovered",
                    patch.0, patch.1
                ),
            ));
        }
        let scaled = match scaled {
            Some((sh, sw)) => {
                if sh == 0 || sw == 0 {
                    return Err(UcagError::value(
                        "scaled_size",
                        format!("must be positive, got ({sh}, {sw})"),
                    ));
                }
                (sh, sw)
            }
            None => {
                if !scale.is_finite() || scale <= 0.0 {
                    return Err(UcagError::value(
                        "scale",
                        format!("must be a finite number > 0, got {scale}"),
                    ));
                }
                (scaled_side(patch.0, scale), scaled_side(patch.1, scale))
            }
        };
        if scaled.0 > MAX_SCALED_SIDE || scaled.1 > MAX_SCALED_SIDE {
            let arg = if scale.is_finite() && scaled.0 != 0 {
                "scale"
            } else {
                "scaled_size"
            };
            return Err(UcagError::value(
                arg,
                format!(
                    "gives scaled patches of ({}, {}), above the limit of {MAX_SCALED_SIDE} px per side",
                    scaled.0, scaled.1
                ),
            ));
        }
        let offsets_y = axis_offsets(height, patch.0, units);
        let offsets_x = axis_offsets(width, patch.1, units);
        for (axis, offsets, side) in [
            ("rows", &offsets_y, patch.0),
            ("columns", &offsets_x, patch.1),
        ] {
            if let Some(w) = offsets.windows(2).find(|w| w[1] - w[0] > side) {
                return Err(UcagError::value(
                    "patch_size",
                    format!(
                        "({}, {}) with units={units} leaves {axis} {}..{} of the ({height}, {width}) \
                         image uncovered; use a larger patch or more units",
                        patch.0,
                        patch.1,
                        w[0] + side,
                        w[1]
                    ),
                ));
            }
        }
        Ok(Grid {
            image,
            units,
            patch,
            scaled,
            offsets_y,
            offsets_x,
        })
    }

    /// The paper's defaults for an image: 6 x 6 patches of 124/224 of the image, scale 2.6.
    pub fn with_defaults(image: (usize, usize)) -> Result<Self, UcagError> {
        Grid::new(image, 6, None, 2.6, None)
    }

    pub fn image_size(&self) -> (usize, usize) {
        self.image
    }
    pub fn units(&self) -> usize {
        self.units
    }
    pub fn patch_size(&self) -> (usize, usize) {
        self.patch
    }
    pub fn scaled_size(&self) -> (usize, usize) {
        self.scaled
    }
    pub fn offsets_y(&self) -> &[usize] {
        &self.offsets_y
    }
    pub fn offsets_x(&self) -> &[usize] {
        &self.offsets_x
    }
    pub fn num_patches(&self) -> usize {
        self.units * self.units
    }
    /// (row offset, column offset) of patch `p = i * units + j`.
    pub fn patch_origin(&self, p: usize) -> (usize, usize) {
        (
            self.offsets_y[p / self.units],
            self.offsets_x[p % self.units],
        )
    }

    /// Number of patch rows covering each image row (length H).
    pub fn row_coverage(&self) -> Vec<u32> {
        axis_coverage(self.image.0, self.patch.0, &self.offsets_y)
    }
    /// Number of patch columns covering each image column (length W).
    pub fn column_coverage(&self) -> Vec<u32> {
        axis_coverage(self.image.1, self.patch.1, &self.offsets_x)
    }

    /// The duplication matrix D (H, W): how many patches contain each pixel. The grid is a
    /// product of row and column intervals, so D is the outer product of the axis counts.
    pub fn coverage(&self) -> Array2<i32> {
        let rows = self.row_coverage();
        let cols = self.column_coverage();
        Array2::from_shape_fn(self.image, |(y, x)| (rows[y] * cols[x]) as i32)
    }
}

fn axis_coverage(size: usize, patch: usize, offsets: &[usize]) -> Vec<u32> {
    let mut counts = vec![0u32; size];
    for &o in offsets {
        for c in &mut counts[o..o + patch] {
            *c += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_defaults_on_224() {
        let g = Grid::with_defaults((224, 224)).unwrap();
        assert_eq!(g.patch_size(), (124, 124));
        assert_eq!(g.scaled_size(), (322, 322));
        assert_eq!(g.offsets_y(), &[0, 20, 40, 60, 80, 100]);
        assert_eq!(g.offsets_x(), &[0, 20, 40, 60, 80, 100]);
        assert_eq!(g.num_patches(), 36);
        let d = g.coverage();
        assert_eq!(d[(0, 0)], 1);
        assert_eq!(d[(112, 112)], 36);
        assert_eq!(d[(223, 223)], 1);
        assert_eq!(d[(0, 112)], 6);
    }

    #[test]
    fn odd_and_non_square_sizes() {
        let g = Grid::new((101, 57), 4, None, 2.0, None).unwrap();
        // round_half_up(124/224 * 101) = round_half_up(55.91) = 56; * 57 -> 31.55 -> 32
        assert_eq!(g.patch_size(), (56, 32));
        // y_i = round_half_up(i * 45 / 3) = 0, 15, 30, 45
        assert_eq!(g.offsets_y(), &[0, 15, 30, 45]);
        // x_i = round_half_up(i * 25 / 3): 0, 8.33 -> 8, 16.67 -> 17, 25
        assert_eq!(g.offsets_x(), &[0, 8, 17, 25]);
        assert_eq!(g.scaled_size(), (112, 64));
        assert_eq!(*g.offsets_y().last().unwrap() + 56, 101);
        assert_eq!(*g.offsets_x().last().unwrap() + 32, 57);
    }

    #[test]
    fn half_up_rounding_of_offsets() {
        // (H - h) / (n - 1) = 5 / 2 = 2.5 -> offsets 0, 3 (half rounds up), 5
        let g = Grid::new((15, 15), 3, Some((10, 10)), 1.0, None).unwrap();
        assert_eq!(g.offsets_y(), &[0, 3, 5]);
        // 124/224 * 112 = 62 exactly; 124/224*2 = 1.107 -> 1
        assert_eq!(round_half_up_ratio(124 * 112, 224), 62);
        assert_eq!(default_patch_side(112), 62);
        assert_eq!(round_half_up_ratio(5, 2), 3);
        assert_eq!(round_half_up_ratio(7, 4), 2);
        assert_eq!(round_half_up_ratio(5, 4), 1);
    }

    #[test]
    fn scaled_size_rounds_half_up() {
        let g = Grid::new((10, 6), 2, Some((5, 3)), 1.5, None).unwrap();
        assert_eq!(g.scaled_size(), (8, 5)); // 7.5 -> 8, 4.5 -> 5
        let g = Grid::new((10, 6), 2, Some((5, 3)), 0.01, None).unwrap();
        assert_eq!(g.scaled_size(), (1, 1));
        let g = Grid::new((10, 6), 2, Some((5, 3)), 1.0, Some((7, 9))).unwrap();
        assert_eq!(g.scaled_size(), (7, 9));
    }

    #[test]
    fn units_one_needs_full_patch() {
        let g = Grid::new((30, 40), 1, Some((30, 40)), 2.0, None).unwrap();
        assert_eq!(g.offsets_y(), &[0]);
        assert_eq!(g.num_patches(), 1);
        assert!(g.coverage().iter().all(|&c| c == 1));
        let err = Grid::new((30, 40), 1, None, 2.0, None).unwrap_err();
        assert_eq!(err.argument(), "units");
    }

    #[test]
    fn every_pixel_covered_for_many_grids() {
        for h in [1usize, 2, 7, 32, 99, 224, 300] {
            for w in [1usize, 5, 64, 225] {
                for units in 1..=8 {
                    let patch = if units == 1 { Some((h, w)) } else { None };
                    match Grid::new((h, w), units, patch, 2.6, None) {
                        Ok(g) => {
                            let d = g.coverage();
                            assert!(d.iter().all(|&c| c >= 1), "{h}x{w} units {units}");
                            let total: i64 = d.iter().map(|&c| c as i64).sum();
                            let (ph, pw) = g.patch_size();
                            assert_eq!(total, (g.num_patches() * ph * pw) as i64);
                            assert_eq!(g.offsets_y()[0], 0);
                            assert_eq!(g.offsets_y()[units - 1] + ph, h);
                            assert_eq!(g.offsets_x()[units - 1] + pw, w);
                        }
                        Err(e) => assert_eq!(e.argument(), "patch_size", "{h}x{w} units {units}"),
                    }
                }
            }
        }
    }

    #[test]
    fn sizes_near_the_top_of_usize_do_not_overflow() {
        // 124 * side and 2 * i * (side - patch) overflow usize here; in u128 they are exact
        let side = usize::MAX / 2;
        assert_eq!(
            default_patch_side(side),
            ((side as u128 * 124 + 112) / 224) as usize
        );
        let offsets = axis_offsets(side, 1, 3);
        assert_eq!(offsets, [0, (side - 1) / 2, side - 1]);
        let g = Grid::new((side, 7), 6, Some((side / 2, 7)), 1e-30, None).unwrap();
        assert_eq!(*g.offsets_y().last().unwrap() + side / 2, side);
        let err = Grid::new((64, 64), MAX_UNITS + 1, None, 2.6, None).unwrap_err();
        assert_eq!(err.argument(), "units");
    }

    #[test]
    fn invalid_geometry_names_the_argument() {
        let cases: Vec<(Result<Grid, UcagError>, &str)> = vec![
            (Grid::new((0, 10), 2, None, 2.0, None), "image_size"),
            (Grid::new((10, 10), 0, None, 2.0, None), "units"),
            (
                Grid::new((10, 10), 2, Some((11, 5)), 2.0, None),
                "patch_size",
            ),
            (
                Grid::new((100, 100), 2, Some((10, 10)), 2.0, None),
                "patch_size",
            ),
            (Grid::new((10, 10), 2, None, 0.0, None), "scale"),
            (Grid::new((10, 10), 2, None, -1.0, None), "scale"),
            (Grid::new((10, 10), 2, None, f64::NAN, None), "scale"),
            (Grid::new((10, 10), 2, None, 1e9, None), "scale"),
            (
                Grid::new((10, 10), 2, None, 2.0, Some((0, 4))),
                "scaled_size",
            ),
        ];
        for (result, arg) in cases {
            let err = result.unwrap_err();
            assert_eq!(err.argument(), arg, "{err}");
            assert!(err.to_string().contains(arg), "{err}");
        }
    }
}

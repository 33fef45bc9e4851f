//! Patch geometry of the spatial unfoldment (docs/algorithm.md section 1): patch size,
//! offsets, scaled size and the coverage ("duplication") matrix. Pure integer arithmetic,
//! exact (in u128 where a product of user sizes could overflow usize) and checked.
//!
//! # Limits
//!
//! `Grid::new` accepts a grid only within these limits, checked in this order; each
//! violation is a `UcagError::Value` naming the argument and the limit:
//!
//! - `image_size`: both sides at least 1, and at most `MAX_PIXELS` = isize::MAX pixels in
//!   all (H * W): no array can address more elements, so no image of more pixels exists.
//! - `units`: at least 1, at most `MAX_UNITS` (1024, so at most 2^20 patches per image),
//!   and at most the image's shorter side min(H, W): an axis of S pixels has at most S
//!   distinct patch positions (S - h + 1 for patches of h pixels), so more patches per
//!   axis than pixels could only repeat patches. (Fewer units may still repeat positions,
//!   e.g. a patch as large as the image with units > 1; such grids stay valid.)
//! - `patch_size`: at most the image on each side; with `units = 1` it must be the whole
//!   image (an error naming `units`); neighbouring patches must leave no pixel uncovered.
//! - `scale` (when no `scaled_size` is given): finite and > 0, and the scaled patch side
//!   round_half_up(scale * side) at most `MAX_SCALED_SIDE` (32768 px): scale below
//!   32768.5 / max(h, w).
//! - `scaled_size`: each side in 1..=`MAX_SCALED_SIDE`.
//!
//! Within them every count fits its type: N = units^2 <= 2^20 patches, a pixel's coverage
//! (at most N) fits i32, every offset is at most side - patch. Buffers sized by the image
//! (the coverage matrix and counts) are allocated fallibly (`crate::alloc`).

use crate::alloc::{self, AllocError};
use crate::error::UcagError;
use ndarray::Array2;
use std::str::FromStr;

/// Patch side relative to the image side when no patch size is given: 124 px on 224 px.
const DEFAULT_PATCH_NUM: usize = 124;
const DEFAULT_PATCH_DEN: usize = 224;
/// Largest scaled patch side accepted; guards against accidental multi-GB allocations.
pub const MAX_SCALED_SIDE: usize = 1 << 15;
/// Most patches per axis accepted (units * units patches per image); guards likewise.
pub const MAX_UNITS: usize = 1 << 10;
/// Most pixels (H * W) an image may have: the most elements an array can address.
pub const MAX_PIXELS: usize = isize::MAX as usize;

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

/// How the fold weighs the pixels of each patch (docs/algorithm.md section 4.1).
///
/// `Box` is the paper's fold: every pixel of a patch counts 1 and the sum is divided by
/// the coverage D, which jumps at every patch edge (the seams). `Linear` and `Cosine`
/// taper each patch side that lies inside the image, over its overlap with the
/// neighbouring patch position (at most half the patch), as a linear or a raised-cosine
/// ramp, and divide by the sum of the windows instead: every weight is in (0, 1], so the
/// sum is positive wherever a patch lies, and a patch enters the sum gradually.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FoldWindow {
    /// Weight 1 on the whole patch; the paper's fold.
    #[default]
    Box,
    /// Ramps `(k + 0.5) / T` over the `T` pixels of a tapered side.
    Linear,
    /// Ramps `(1 - cos(pi (k + 0.5) / T)) / 2` over the `T` pixels of a tapered side.
    Cosine,
}

impl FromStr for FoldWindow {
    type Err = UcagError;
    fn from_str(s: &str) -> Result<Self, UcagError> {
        match s {
            "box" => Ok(FoldWindow::Box),
            "linear" => Ok(FoldWindow::Linear),
            "cosine" => Ok(FoldWindow::Cosine),
            other => Err(UcagError::value(
                "window",
                // worded as ucag.options.check_choice words it
                format!("expected 'box', 'linear' or 'cosine' ('box' is the paper's fold), got '{other}'"),
            )),
        }
    }
}

impl FoldWindow {
    /// The ramp's value at pixel `k` (0-based, from the patch edge) of a taper `length`
    /// pixels long: in (0, 1), and a ramp and its mirror image sum to 1.
    fn ramp(self, k: usize, length: usize) -> f64 {
        let t = (k as f64 + 0.5) / length as f64;
        match self {
            FoldWindow::Box => 1.0,
            FoldWindow::Linear => t,
            FoldWindow::Cosine => 0.5 - 0.5 * (std::f64::consts::PI * t).cos(),
        }
    }
}

/// A grid's fold window, separable like the grid: patch p = (i, j) (row-major) weighs its
/// pixel (r, c) by `rows[i][r] * columns[j][c]`, and the fold divides pixel (y, x) by
/// `row_sums[y] * column_sums[x]`, the sum of the windows of the patches that contain it.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldWeights {
    pub rows: Vec<Vec<f64>>,
    pub columns: Vec<Vec<f64>>,
    pub row_sums: Vec<f64>,
    pub column_sums: Vec<f64>,
}

/// `round_half_up(num / den)` for non-negative integers, exactly; None when `den` is 0 or
/// `2 * num + den` overflows u128 (it never does for products of two usizes, so no size a
/// user gives overflows it).
pub fn round_half_up_ratio(num: u128, den: u128) -> Option<u128> {
    num.checked_mul(2)?
        .checked_add(den)?
        .checked_div(den.checked_mul(2)?)
}

/// The default patch side for an image side: round_half_up(124/224 * side) (at most side).
fn default_patch_side(side: usize) -> usize {
    round_half_up_ratio(
        DEFAULT_PATCH_NUM as u128 * side as u128,
        DEFAULT_PATCH_DEN as u128,
    )
    .and_then(|patch| usize::try_from(patch).ok())
    .unwrap_or(side) // unreachable: 124/224 of a usize is a smaller usize
}

/// Offsets `round_half_up(i * (size - patch) / (units - 1))` for i in 0..units (each at
/// most size - patch; computed in u128, so large sizes do not overflow). Errors when
/// `patch > size` (naming `patch_size`) or `units` is 0 or above `MAX_UNITS` (naming
/// `units`).
pub fn axis_offsets(size: usize, patch: usize, units: usize) -> Result<Vec<usize>, UcagError> {
    let free = size.checked_sub(patch).ok_or_else(|| {
        UcagError::value(
            "patch_size",
            format!("{patch} is larger than the image side {size}"),
        )
    })?;
    if units == 0 || units > MAX_UNITS {
        return Err(UcagError::value(
            "units",
            format!("must be between 1 and {MAX_UNITS}, got {units}"),
        ));
    }
    if units == 1 {
        return Ok(vec![0]);
    }
    let steps = (units - 1) as u128;
    (0..units)
        .map(|i| {
            round_half_up_ratio(i as u128 * free as u128, steps)
                .and_then(|offset| usize::try_from(offset).ok())
                .filter(|&offset| offset <= free)
                .ok_or_else(|| {
                    UcagError::value("units", format!("offset {i} of {units} is out of range"))
                })
        })
        .collect()
}

/// round_half_up(scale * patch), at least 1; None above `MAX_SCALED_SIDE` (or when the
/// product is not finite).
fn scaled_side(patch: usize, scale: f64) -> Option<usize> {
    let s = (scale * patch as f64 + 0.5).floor();
    if s <= MAX_SCALED_SIDE as f64 {
        Some((s as usize).max(1))
    } else {
        None
    }
}

/// The image size is positive and addressable.
fn check_image((height, width): (usize, usize)) -> Result<(), UcagError> {
    if height == 0 || width == 0 {
        return Err(UcagError::value(
            "image_size",
            format!("must be positive, got ({height}, {width})"),
        ));
    }
    let pixels = height as u128 * width as u128;
    if pixels > MAX_PIXELS as u128 {
        return Err(UcagError::value(
            "image_size",
            format!(
                "({height}, {width}) has {pixels} pixels, more than the {MAX_PIXELS} \
                 elements an array can address"
            ),
        ));
    }
    Ok(())
}

/// 1 <= units <= `MAX_UNITS`, and no more patch positions than the shorter side has pixels.
fn check_units(units: usize, (height, width): (usize, usize)) -> Result<(), UcagError> {
    if units == 0 {
        return Err(UcagError::value("units", "must be at least 1, got 0"));
    }
    if units > MAX_UNITS {
        return Err(UcagError::value(
            "units",
            format!("must be at most {MAX_UNITS} ({MAX_UNITS}^2 patches per image), got {units}"),
        ));
    }
    let shorter = height.min(width);
    if units > shorter {
        return Err(UcagError::value(
            "units",
            format!(
                "must be at most {shorter}, the shorter side of image_size ({height}, \
                 {width}): an axis of S pixels has at most S distinct patch positions, \
                 got {units}"
            ),
        ));
    }
    Ok(())
}

/// The patch size: the given one or the default, at least 1 px, within the image, and the
/// whole image when there is one unit.
fn resolve_patch(
    patch: Option<(usize, usize)>,
    image: (usize, usize),
    units: usize,
) -> Result<(usize, usize), UcagError> {
    let (height, width) = image;
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
    Ok(patch)
}

/// A scaled size given directly: positive and at most `MAX_SCALED_SIDE` per side.
fn check_scaled((sh, sw): (usize, usize)) -> Result<(usize, usize), UcagError> {
    if sh == 0 || sw == 0 {
        return Err(UcagError::value(
            "scaled_size",
            format!("must be positive, got ({sh}, {sw})"),
        ));
    }
    if sh > MAX_SCALED_SIDE || sw > MAX_SCALED_SIDE {
        return Err(UcagError::value(
            "scaled_size",
            format!("each side must be at most {MAX_SCALED_SIDE} px, got ({sh}, {sw})"),
        ));
    }
    Ok((sh, sw))
}

/// The scaled size from `scale`: round_half_up(scale * patch) per side, within the limit.
fn scaled_from_scale(patch: (usize, usize), scale: f64) -> Result<(usize, usize), UcagError> {
    if !scale.is_finite() || scale <= 0.0 {
        return Err(UcagError::value(
            "scale",
            format!("must be a finite number > 0, got {scale}"),
        ));
    }
    match (scaled_side(patch.0, scale), scaled_side(patch.1, scale)) {
        (Some(sh), Some(sw)) => Ok((sh, sw)),
        _ => {
            let limit = (MAX_SCALED_SIDE as f64 + 0.5) / patch.0.max(patch.1) as f64;
            Err(UcagError::value(
                "scale",
                format!(
                    "must be below {limit} for patch_size ({}, {}): scaled patches \
                     are limited to {MAX_SCALED_SIDE} px per side, got {scale:?}",
                    patch.0, patch.1
                ),
            ))
        }
    }
}

/// Consecutive patches along each axis leave no pixel uncovered.
fn check_covered(
    (height, width): (usize, usize),
    patch: (usize, usize),
    units: usize,
    offsets_y: &[usize],
    offsets_x: &[usize],
) -> Result<(), UcagError> {
    for (axis, offsets, side) in [
        ("rows", offsets_y, patch.0),
        ("columns", offsets_x, patch.1),
    ] {
        // offsets never decrease and each is at most size - patch: no overflow here
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
    Ok(())
}

impl Grid {
    /// Builds and validates a grid. `patch` defaults to 124/224 of the image side (rounded
    /// half up); `scaled` overrides `scale`. Errors name the offending argument; the
    /// limits are in the module documentation.
    pub fn new(
        image: (usize, usize),
        units: usize,
        patch: Option<(usize, usize)>,
        scale: f64,
        scaled: Option<(usize, usize)>,
    ) -> Result<Self, UcagError> {
        check_image(image)?;
        check_units(units, image)?;
        let patch = resolve_patch(patch, image, units)?;
        let scaled = match scaled {
            Some(scaled) => check_scaled(scaled)?,
            None => scaled_from_scale(patch, scale)?,
        };
        let offsets_y = axis_offsets(image.0, patch.0, units)?;
        let offsets_x = axis_offsets(image.1, patch.1, units)?;
        check_covered(image, patch, units, &offsets_y, &offsets_x)?;
        Ok(Grid {
            image,
            units,
            patch,
            scaled,
            offsets_y,
            offsets_x,
        })
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
    /// N = units * units (at most `MAX_UNITS`^2 = 2^20).
    pub fn num_patches(&self) -> usize {
        self.units * self.units
    }
    /// (row offset, column offset) of patch `p = i * units + j` (p < `num_patches`).
    pub fn patch_origin(&self, p: usize) -> (usize, usize) {
        (
            self.offsets_y[p / self.units],
            self.offsets_x[p % self.units],
        )
    }

    /// Number of patch rows covering each image row (length H, allocated fallibly).
    pub fn row_coverage(&self) -> Result<Vec<u32>, AllocError> {
        axis_coverage(self.image.0, self.patch.0, &self.offsets_y)
    }
    /// Number of patch columns covering each image column (length W, allocated fallibly).
    pub fn column_coverage(&self) -> Result<Vec<u32>, AllocError> {
        axis_coverage(self.image.1, self.patch.1, &self.offsets_x)
    }

    /// The fold's window (`FoldWindow`) for this grid: a profile per patch offset along
    /// each axis and the sums of the placed profiles, whose outer product divides the fold.
    /// For `Box` the profiles are ones and the sums the coverage counts, exactly.
    pub fn fold_weights(&self, window: FoldWindow) -> Result<FoldWeights, AllocError> {
        let rows = axis_windows(self.image.0, self.patch.0, &self.offsets_y, window)?;
        let columns = axis_windows(self.image.1, self.patch.1, &self.offsets_x, window)?;
        let row_sums = axis_window_sums(self.image.0, &self.offsets_y, &rows)?;
        let column_sums = axis_window_sums(self.image.1, &self.offsets_x, &columns)?;
        Ok(FoldWeights {
            rows,
            columns,
            row_sums,
            column_sums,
        })
    }

    /// The duplication matrix D (H, W): how many patches contain each pixel. The grid is a
    /// product of row and column intervals, so D is the outer product of the axis counts.
    /// An error naming `image_size` when the H * W int32 matrix cannot be allocated
    /// (`crate::alloc`: ValueError above isize::MAX bytes, MemoryError above the
    /// memory this process can have or when the allocator refuses).
    pub fn coverage(&self) -> Result<Array2<i32>, UcagError> {
        let (height, width) = self.image;
        let what = || format!("gives a coverage matrix of shape ({height}, {width}) int32");
        // check before the axis counts, so that the error names the matrix
        alloc::check_shape(std::mem::size_of::<i32>(), &[height, width])
            .map_err(|e| e.named("image_size", what()))?;
        let rows = self
            .row_coverage()
            .map_err(|e| e.named("image_size", what()))?;
        let cols = self
            .column_coverage()
            .map_err(|e| e.named("image_size", what()))?;
        // a count is at most units, a product at most units^2 <= 2^20: fits i32
        let values = rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| (r * c) as i32));
        let data = alloc::try_collect(height * width, values)
            .map_err(|e| e.named("image_size", what()))?;
        Array2::from_shape_vec(self.image, data)
            .map_err(|e| UcagError::value("image_size", format!("{}: {e}", what())))
    }
}

/// How many of the patches at `offsets` (each `patch` long) cover each of `size` indices.
fn axis_coverage(size: usize, patch: usize, offsets: &[usize]) -> Result<Vec<u32>, AllocError> {
    let mut counts = alloc::try_zeros::<u32>(size)?;
    for &o in offsets {
        // o + patch <= size: a grid's offsets are at most size - patch
        for c in &mut counts[o..o + patch] {
            *c += 1;
        }
    }
    Ok(counts)
}

/// One window profile per offset along an axis of `size` pixels. A patch side tapers when
/// it lies inside the image (offset > 0 at the start, offset + patch < size at the end),
/// over its overlap with the neighbouring patch on that side, at most half the patch, so
/// the two ramps of a profile never meet.
fn axis_windows(
    size: usize,
    patch: usize,
    offsets: &[usize],
    window: FoldWindow,
) -> Result<Vec<Vec<f64>>, AllocError> {
    let mut profiles = alloc::try_with_capacity(offsets.len())?;
    let half = patch / 2;
    for (i, &o) in offsets.iter().enumerate() {
        let mut profile = alloc::try_collect(patch, std::iter::repeat_n(1.0, patch))?;
        if window != FoldWindow::Box {
            // Offsets ascend and every pixel is covered, so a neighbour overlaps (or touches)
            // this patch: offsets[i - 1] + patch >= o, o + patch >= offsets[i + 1].
            let start = match i.checked_sub(1) {
                Some(p) if o > 0 => (offsets[p] + patch).saturating_sub(o).min(half),
                _ => 0,
            };
            let end = match offsets.get(i + 1) {
                Some(&next) if o + patch < size => (o + patch).saturating_sub(next).min(half),
                _ => 0,
            };
            for (k, w) in profile.iter_mut().take(start).enumerate() {
                *w = window.ramp(k, start);
            }
            for (k, w) in profile.iter_mut().rev().take(end).enumerate() {
                *w = window.ramp(k, end);
            }
        }
        profiles.push(profile);
    }
    Ok(profiles)
}

/// The sum over an axis's patch positions of their window profiles, placed at their
/// offsets: length `size`. For `Box` these are the coverage counts, exactly.
fn axis_window_sums(
    size: usize,
    offsets: &[usize],
    profiles: &[Vec<f64>],
) -> Result<Vec<f64>, AllocError> {
    let mut sums = alloc::try_zeros::<f64>(size)?;
    for (&o, profile) in offsets.iter().zip(profiles) {
        for (s, &w) in sums[o..o + profile.len()].iter_mut().zip(profile) {
            *s += w;
        }
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_window_sums_are_the_coverage_counts() {
        for (image, units, patch) in [
            ((224, 224), 6, None),
            ((57, 101), 4, None),
            ((30, 30), 3, Some((30, 30))),
        ] {
            let g = Grid::new(image, units, patch, 2.6, None).unwrap();
            let w = g.fold_weights(FoldWindow::Box).unwrap();
            let rows: Vec<f64> = g
                .row_coverage()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect();
            let cols: Vec<f64> = g
                .column_coverage()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect();
            assert_eq!(w.row_sums, rows);
            assert_eq!(w.column_sums, cols);
            assert!(w.rows.iter().chain(&w.columns).flatten().all(|&v| v == 1.0));
        }
    }

    #[test]
    fn tapered_windows_taper_only_inside_the_image() {
        // 224 px, patches of 124 at 0, 20, ..., 100: each inner side overlaps its neighbour
        // by 104 px, so it tapers over half the patch (62 px).
        let g = Grid::new((224, 224), 6, None, 2.6, None).unwrap();
        for window in [FoldWindow::Linear, FoldWindow::Cosine] {
            let w = g.fold_weights(window).unwrap();
            let first = &w.rows[0];
            assert!(
                first[..62].iter().all(|&v| v == 1.0),
                "the image's edge does not taper"
            );
            assert!(
                first[62..].windows(2).all(|p| p[1] < p[0]),
                "the inner side ramps down"
            );
            let last = &w.rows[5];
            assert!(last[62..].iter().all(|&v| v == 1.0));
            let middle = &w.rows[2];
            assert_eq!(middle.len(), 124);
            // a ramp and its mirror image sum to 1, so a middle profile is symmetric
            for k in 0..62 {
                assert!((middle[k] - middle[123 - k]).abs() < 1e-12);
            }
            assert!(w.rows.iter().flatten().all(|&v| v > 0.0 && v <= 1.0));
            assert!(w.row_sums.iter().all(|&s| s > 0.0));
        }
        // Patches that touch without overlapping have nothing to blend: no taper.
        let g = Grid::new((8, 8), 2, Some((4, 4)), 1.0, None).unwrap();
        let w = g.fold_weights(FoldWindow::Cosine).unwrap();
        assert!(w.rows.iter().flatten().all(|&v| v == 1.0));
        assert!(w.row_sums.iter().all(|&s| s == 1.0));
    }

    #[test]
    fn window_names() {
        assert_eq!("box".parse::<FoldWindow>().unwrap(), FoldWindow::Box);
        assert_eq!("linear".parse::<FoldWindow>().unwrap(), FoldWindow::Linear);
        assert_eq!("cosine".parse::<FoldWindow>().unwrap(), FoldWindow::Cosine);
        let err = "hann".parse::<FoldWindow>().unwrap_err();
        assert_eq!(err.argument(), "window");
        assert!(err.to_string().contains("'box'"));
    }

    #[test]
    fn paper_defaults_on_224() {
        let g = Grid::new((224, 224), 6, None, 2.6, None).unwrap();
        assert_eq!(g.patch_size(), (124, 124));
        assert_eq!(g.scaled_size(), (322, 322));
        assert_eq!(g.offsets_y(), &[0, 20, 40, 60, 80, 100]);
        assert_eq!(g.offsets_x(), &[0, 20, 40, 60, 80, 100]);
        assert_eq!(g.num_patches(), 36);
        let d = g.coverage().unwrap();
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
        assert_eq!(round_half_up_ratio(124 * 112, 224), Some(62));
        assert_eq!(default_patch_side(112), 62);
        assert_eq!(round_half_up_ratio(5, 2), Some(3));
        assert_eq!(round_half_up_ratio(7, 4), Some(2));
        assert_eq!(round_half_up_ratio(5, 4), Some(1));
        assert_eq!(round_half_up_ratio(5, 0), None);
        assert_eq!(round_half_up_ratio(u128::MAX / 2 + 1, 3), None);
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
        assert!(g.coverage().unwrap().iter().all(|&c| c == 1));
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
                            assert!(units <= h.min(w), "{h}x{w} units {units}");
                            let d = g.coverage().unwrap();
                            assert!(d.iter().all(|&c| c >= 1), "{h}x{w} units {units}");
                            let total: i64 = d.iter().map(|&c| c as i64).sum();
                            let (ph, pw) = g.patch_size();
                            assert_eq!(total, (g.num_patches() * ph * pw) as i64);
                            assert_eq!(g.offsets_y()[0], 0);
                            assert_eq!(g.offsets_y()[units - 1] + ph, h);
                            assert_eq!(g.offsets_x()[units - 1] + pw, w);
                        }
                        Err(e) if units > h.min(w) => assert_eq!(e.argument(), "units", "{e}"),
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
        let offsets = axis_offsets(side, 1, 3).unwrap();
        assert_eq!(offsets, [0, (side - 1) / 2, side - 1]);
        assert_eq!(axis_offsets(5, 6, 2).unwrap_err().argument(), "patch_size");
        assert_eq!(axis_offsets(5, 2, 0).unwrap_err().argument(), "units");
        assert_eq!(
            axis_offsets(5, 2, MAX_UNITS + 1).unwrap_err().argument(),
            "units"
        );
        // the largest image side with 7 columns: 2 * 5 * (side - patch) overflows u64
        let side = MAX_PIXELS / 7;
        let g = Grid::new((side, 7), 6, Some((side / 2, 7)), 1e-30, None).unwrap();
        assert_eq!(*g.offsets_y().last().unwrap() + side / 2, side);
        let err = Grid::new((64, 64), MAX_UNITS + 1, None, 2.6, None).unwrap_err();
        assert_eq!(err.argument(), "units");
    }

    #[test]
    fn limits_name_the_argument_and_the_limit() {
        let cases: Vec<(Result<Grid, UcagError>, &str, &str)> = vec![
            (
                Grid::new((1 << 62, 1 << 62), 6, None, 2.6, None),
                "image_size",
                "more than the 9223372036854775807 elements an array can address",
            ),
            (
                Grid::new((MAX_PIXELS / 2 + 1, 2), 2, None, 1e-30, None),
                "image_size",
                "has 9223372036854775808 pixels",
            ),
            (
                Grid::new((64, 64), 1 << 62, None, 2.6, None),
                "units",
                "must be at most 1024",
            ),
            (
                Grid::new((64, 40), 41, Some((1, 1)), 1.0, None),
                "units",
                "must be at most 40, the shorter side of image_size (64, 40)",
            ),
            (
                Grid::new((64, 64), 6, None, 1e300, None),
                "scale",
                "must be below 936.2428571428571 for patch_size (35, 35): scaled patches \
                 are limited to 32768 px per side, got 1e300",
            ),
            (
                Grid::new((64, 64), 6, None, 2.6, Some((1 << 40, 1 << 40))),
                "scaled_size",
                "each side must be at most 32768 px, got (1099511627776, 1099511627776)",
            ),
            (
                Grid::new((64, 64), 6, None, 2.6, Some((5, 32769))),
                "scaled_size",
                "at most 32768",
            ),
        ];
        for (result, argument, limit) in cases {
            let err = result.unwrap_err();
            assert_eq!(err.argument(), argument, "{err}");
            assert!(
                err.to_string().starts_with(&format!("{argument}: ")),
                "{err}"
            );
            assert!(err.to_string().contains(limit), "{err}");
        }
        // at the limits: one patch position per pixel, the largest scaled patch
        let g = Grid::new((64, 40), 40, Some((25, 1)), 1.0, Some((32768, 32768))).unwrap();
        assert_eq!(g.scaled_size(), (32768, 32768));
        assert_eq!(
            Grid::new((64, 40), 40, Some((25, 1)), 1310.0, None)
                .unwrap()
                .scaled_size(),
            (32750, 1310)
        );
        assert_eq!(g.offsets_x(), (0..40).collect::<Vec<_>>());
        assert!(Grid::new((64, 64), 2, Some((35, 35)), 936.24, None).is_ok());
        assert!(Grid::new((64, 64), 2, Some((35, 35)), 936.25, None).is_err());
        // a patch as large as the image repeats positions but stays valid
        let g = Grid::new((100, 80), 3, Some((100, 80)), 1.0, None).unwrap();
        assert_eq!(g.offsets_y(), &[0, 0, 0]);
        assert_eq!(g.coverage().unwrap()[(0, 0)], 9);
    }

    #[test]
    fn a_coverage_matrix_too_large_is_an_error_not_an_abort() {
        // 2^62 int32 counts: more bytes than an array can address
        let g = Grid::new((1 << 31, 1 << 31), 2, None, 1e-9, None).unwrap();
        let err = g.coverage().unwrap_err();
        assert!(matches!(err, UcagError::Value { .. }), "{err}");
        assert!(err.to_string().starts_with("image_size: gives a coverage matrix of shape (2147483648, 2147483648) int32, too large to allocate"), "{err}");
        // 2^48 counts (1 PiB): addressable, beyond any machine's memory
        let g = Grid::new((1 << 24, 1 << 24), 6, None, 1e-6, None).unwrap();
        let err = g.coverage().unwrap_err();
        assert!(matches!(err, UcagError::Memory { .. }), "{err}");
        assert!(
            err.to_string().starts_with(
                "image_size: gives a coverage matrix of shape (16777216, 16777216) int32, "
            ),
            "{err}"
        );
        // the axis counts alone are small
        assert_eq!(g.row_coverage().unwrap().len(), 1 << 24);
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

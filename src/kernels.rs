//! The UCAG kernels on `ndarray` views, parallelised with rayon: bicubic unfold
//! (docs/algorithm.md section 1), confidence weights (section 3) and the fold (section 4).
//! They take views of any dimensionality, check shapes and finiteness (once: the bindings
//! only convert) and return `UcagError`s naming the argument.
//!
//! Every buffer whose size follows from the arguments (outputs, resampling tables, the
//! per-thread resize buffer, coverage counts, a row-major copy of strided maps) is
//! allocated through `crate::alloc`: a size that cannot be addressed is a ValueError; one
//! beyond the memory the process can have, or refused by the allocator, a MemoryError;
//! both name the argument (`images` for unfold, `maps` for fold). Sub-products of an
//! output's shape fit usize once the whole shape has been checked.

use crate::alloc::{self, AllocError, ZeroBits};
use crate::error::UcagError;
use crate::grid::{FoldWindow, Grid};
use crate::resample::{cubic_taps, linear_taps, Taps};
use ndarray::{
    Array1, Array2, Array3, Array4, ArrayView, ArrayView2, ArrayView3, Axis, CowArray, Dimension,
    Ix1, Ix2, Ix3, Ix4,
};
use num_traits::Float;
use rayon::prelude::*;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Floating element types the kernels accept (zeroed memory is a valid array of them).
pub trait Real: Float + ZeroBits + Send + Sync + 'static {
    /// The numpy name of the type, for messages.
    const NAME: &'static str;
}
impl Real for f32 {
    const NAME: &'static str = "float32";
}
impl Real for f64 {
    const NAME: &'static str = "float64";
}

/// How a patch's target probability becomes its weight (docs/algorithm.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighting {
    /// `exp(p)`, the paper's choice.
    Exp,
    /// `p`.
    Prob,
    /// `1`.
    Uniform,
}

impl FromStr for Weighting {
    type Err = UcagError;
    fn from_str(s: &str) -> Result<Self, UcagError> {
        match s {
            "exp" => Ok(Weighting::Exp),
            "prob" => Ok(Weighting::Prob),
            "uniform" => Ok(Weighting::Uniform),
            other => Err(UcagError::value(
                "mode",
                // worded as ucag.options.check_choice words it
                format!("expected 'exp', 'prob' or 'uniform', got {other:?}"),
            )),
        }
    }
}

impl Weighting {
    pub fn apply(self, probability: f64) -> f64 {
        match self {
            Weighting::Exp => probability.exp(),
            Weighting::Prob => probability,
            Weighting::Uniform => 1.0,
        }
    }
}

/// Rejects NaN/Inf in `values` (any layout). Contiguous data is scanned in parallel chunks
/// with a branch-free loop the compiler vectorises: on a 0.5 GB batch of maps this check
/// would otherwise cost as much as the fold itself.
fn ensure_finite<T: Real, D: ndarray::Dimension>(
    argument: &'static str,
    values: ndarray::ArrayView<'_, T, D>,
) -> Result<(), UcagError> {
    let finite = match values.as_slice_memory_order() {
        Some(slice) => slice
            .par_chunks(1 << 15)
            .all(|chunk| chunk.iter().fold(true, |ok, v| ok & v.is_finite())),
        None => values.into_par_iter().all(|v| v.is_finite()),
    };
    if finite {
        Ok(())
    } else {
        Err(UcagError::value(argument, "contains NaN or Inf values"))
    }
}

/// `view` as `E`-dimensional, once the shape checks have passed (a failure here is a bug).
fn with_dims<'a, T, D: Dimension, E: Dimension>(
    argument: &'static str,
    view: ArrayView<'a, T, D>,
) -> Result<ArrayView<'a, T, E>, UcagError> {
    view.into_dimensionality::<E>()
        .map_err(|e| UcagError::value(argument, format!("unexpected dimensionality: {e}")))
}

/// Checks that an array of `shape` could exist: its element count fits isize (the check
/// functions take shapes from Python, not only from existing arrays).
fn ensure_addressable(argument: &'static str, shape: &[usize]) -> Result<(), UcagError> {
    match alloc::byte_size(1, shape) {
        Some(n) if n <= isize::MAX as u128 => Ok(()),
        _ => Err(UcagError::value(
            argument,
            format!(
                "shape {shape:?} has more elements than the {} an array can address",
                isize::MAX
            ),
        )),
    }
}

/// `len` zeros of `T` as an array of `shape` (whose element count is `len`), fallibly.
fn zeros<T: Real, D: Dimension>(
    shape: impl Into<ndarray::StrideShape<D>>,
    len: usize,
    argument: &'static str,
    what: impl Fn() -> String,
) -> Result<ndarray::Array<T, D>, UcagError> {
    let data = alloc::try_zeros::<T>(len).map_err(|e| e.named(argument, what()))?;
    ndarray::Array::from_shape_vec(shape, data)
        .map_err(|e| UcagError::value(argument, format!("{}: {e}", what())))
}

/// `view` in row-major order: borrowed when it already is, else copied fallibly.
fn standard_layout<'a, T: Real>(
    argument: &'static str,
    view: ArrayView3<'a, T>,
) -> Result<CowArray<'a, T, Ix3>, UcagError> {
    if view.is_standard_layout() {
        return Ok(CowArray::from(view));
    }
    let what = || format!("of shape {:?} needs a row-major copy", view.shape());
    let data = alloc::try_collect(view.len(), view.iter().copied())
        .map_err(|e| e.named(argument, what()))?;
    let copy = Array3::from_shape_vec(view.raw_dim(), data)
        .map_err(|e| UcagError::value(argument, format!("{}: {e}", what())))?;
    Ok(CowArray::from(copy))
}

fn ensure_nonempty(argument: &'static str, shape: &[usize]) -> Result<(), UcagError> {
    if shape.contains(&0) {
        Err(UcagError::value(
            argument,
            format!("is empty (shape {shape:?})"),
        ))
    } else {
        Ok(())
    }
}

/// Checks that a (B, C, H, W) image batch matches the grid; returns B.
pub fn check_images(shape: &[usize], grid: &Grid) -> Result<usize, UcagError> {
    if shape.len() != 4 {
        return Err(UcagError::value(
            "images",
            format!(
                "must have shape (B, C, H, W), got {} dimensions {shape:?}",
                shape.len()
            ),
        ));
    }
    ensure_nonempty("images", shape)?;
    ensure_addressable("images", shape)?;
    let (h, w) = grid.image_size();
    if (shape[2], shape[3]) != (h, w) {
        return Err(UcagError::value(
            "images",
            format!(
                "spatial size ({}, {}) does not match the grid's image_size ({h}, {w}); build the \
                 grid for this size",
                shape[2], shape[3]
            ),
        ));
    }
    Ok(shape[0])
}

/// Shape checks shared by both fold paths. `maps_shape` is (rows, h', w') or
/// (rows, 1, h', w'); returns (B, h', w').
pub fn check_fold_inputs(
    maps_shape: &[usize],
    weights_shape: &[usize],
    grid: &Grid,
) -> Result<(usize, usize, usize), UcagError> {
    let (rows, mh, mw) = match *maps_shape {
        [rows, mh, mw] => (rows, mh, mw),
        [rows, 1, mh, mw] => (rows, mh, mw),
        _ => {
            return Err(UcagError::value(
                "maps",
                format!("must have shape (B*N, h, w) or (B*N, 1, h, w), got {maps_shape:?}"),
            ))
        }
    };
    ensure_nonempty("maps", maps_shape)?;
    ensure_addressable("maps", maps_shape)?;
    if weights_shape.len() != 1 {
        return Err(UcagError::value(
            "weights",
            format!("must have shape (B*N,), got {weights_shape:?}"),
        ));
    }
    if weights_shape[0] != rows {
        return Err(UcagError::value(
            "weights",
            format!(
                "has {} rows but maps has {rows}; give one weight per partial map",
                weights_shape[0]
            ),
        ));
    }
    let n = grid.num_patches();
    if rows % n != 0 {
        return Err(UcagError::value(
            "maps",
            format!("has {rows} rows, not a multiple of the grid's {n} patches"),
        ));
    }
    Ok((rows / n, mh, mw))
}

/// Checks (rows, K) logits against `targets`; returns K.
pub fn check_confidence_inputs(
    logits_shape: &[usize],
    targets: &[i64],
) -> Result<usize, UcagError> {
    if logits_shape.len() != 2 {
        return Err(UcagError::value(
            "logits",
            format!("must have shape (rows, K), got {logits_shape:?}"),
        ));
    }
    ensure_nonempty("logits", logits_shape)?;
    // rows * K elements: addressable, so every class index fits i64 too
    ensure_addressable("logits", logits_shape)?;
    let (rows, classes) = (logits_shape[0], logits_shape[1]);
    if targets.len() != rows {
        return Err(UcagError::value(
            "targets",
            format!(
                "has {} entries but logits has {rows} rows; give one target per row",
                targets.len()
            ),
        ));
    }
    let out_of_range = |t: i64| usize::try_from(t).map_or(true, |t| t >= classes);
    if let Some(bad) = targets.iter().find(|&&t| out_of_range(t)) {
        return Err(UcagError::value(
            "targets",
            format!("class {bad} is out of range for {classes} classes"),
        ));
    }
    Ok(classes)
}

/// Bicubic unfold: (B, C, H, W) -> (B*N, C, S_h, S_w); row b*N + p holds patch p of image b.
pub fn unfold<T: Real, D: Dimension>(
    images: ArrayView<T, D>,
    grid: &Grid,
) -> Result<Array4<T>, UcagError> {
    check_images(images.shape(), grid)?;
    let images = with_dims::<T, D, Ix4>("images", images)?;
    ensure_finite("images", images.view())?;
    let (batch, channels) = (images.shape()[0], images.shape()[1]);
    let n = grid.num_patches();
    let (ph, pw) = grid.patch_size();
    let (sh, sw) = grid.scaled_size();
    let what = || {
        format!(
            "with this grid ({n} patches of {ph} x {pw} px scaled to {sh} x {sw}) gives a result of \
             shape ({}, {channels}, {sh}, {sw}) {}",
            batch as u128 * n as u128,
            T::NAME
        )
    };
    let bytes = alloc::check_shape(std::mem::size_of::<T>(), &[batch, n, channels, sh, sw])
        .map_err(|e| e.named("images", what()))?;
    // The result's shape fits: so does every product of its sides below.
    let len = bytes / std::mem::size_of::<T>().max(1);
    let table =
        |e: AllocError| e.named("images", "needs bicubic tables for the grid's scaled size");
    let rows = cubic_taps::<T>(ph, sh).map_err(table)?;
    let cols = cubic_taps::<T>(pw, sw).map_err(table)?;
    // Each task resizes through a (patch rows x S_w) float64 buffer of its own.
    let threads = rayon::current_num_threads();
    let across_what =
        || format!("needs a {ph} x {sw} float64 resize buffer on each of {threads} threads");
    alloc::check_shape(std::mem::size_of::<f64>(), &[threads, ph, sw])
        .map_err(|e| e.named("images", across_what()))?;
    let mut out = zeros::<T, _>((batch * n, channels, sh, sw), len, "images", what)?;
    let refused = AtomicBool::new(false);
    // One task per output plane (patch row k, channel c); planes are disjoint.
    out.as_slice_mut()
        .expect("fresh array is contiguous")
        .par_chunks_mut(sh * sw)
        .enumerate()
        .for_each_init(
            || {
                alloc::try_zeros::<f64>(ph * sw)
                    .ok()
                    .and_then(|data| Array2::from_shape_vec((ph, sw), data).ok())
            },
            |across, (plane, dst)| {
                let Some(across) = across else {
                    refused.store(true, Ordering::Relaxed);
                    return;
                };
                let (k, c) = (plane / channels, plane % channels);
                let (b, p) = (k / n, k % n);
                let (oy, ox) = grid.patch_origin(p);
                let src = images.index_axis(Axis(0), b);
                let src = src.index_axis(Axis(0), c);
                resize_cubic_plane(src, (oy, ox), &rows, &cols, across, dst);
            },
        );
    if refused.into_inner() {
        return Err(UcagError::memory(
            "images",
            format!("{}, which could not be allocated", across_what()),
        ));
    }
    Ok(out)
}

/// Separable bicubic resize of the patch of `src` at `origin`: first along columns into
/// `across` (patch rows x S_w), then along rows into `dst` (S_h x S_w).
fn resize_cubic_plane<T: Real>(
    src: ArrayView2<T>,
    origin: (usize, usize),
    rows: &[Taps<4>],
    cols: &[Taps<4>],
    across: &mut Array2<f64>,
    dst: &mut [T],
) {
    let (oy, ox) = origin;
    for (r, mut line) in across.outer_iter_mut().enumerate() {
        let src_row = src.row(oy + r);
        for (out, tap) in line.iter_mut().zip(cols) {
            *out = (0..4)
                .map(|k| tap.weight[k] * src_row[ox + tap.index[k]].to_f64().unwrap_or(f64::NAN))
                .sum();
        }
    }
    let sw = cols.len();
    for (line, tap) in dst.chunks_mut(sw).zip(rows) {
        let taps = tap.index.map(|i| across.row(i));
        for (x, out) in line.iter_mut().enumerate() {
            let v: f64 = (0..4).map(|k| tap.weight[k] * taps[k][x]).sum();
            *out = T::from(v).unwrap_or_else(T::nan);
        }
    }
}

/// Softmax probability p of each row's target class and its weight `mode.apply(p)`, from
/// one softmax: (probabilities, weights), each (rows,) in T. p is computed in f64 and each
/// result is rounded to T once.
pub fn confidence_with_probabilities<T: Real, D: Dimension>(
    logits: ArrayView<T, D>,
    targets: &[i64],
    mode: Weighting,
) -> Result<(Array1<T>, Array1<T>), UcagError> {
    check_confidence_inputs(logits.shape(), targets)?;
    let logits = with_dims::<T, D, Ix2>("logits", logits)?;
    ensure_finite("logits", logits.view())?;
    let (probabilities, weights): (Vec<T>, Vec<T>) = logits
        .axis_iter(Axis(0))
        .into_par_iter()
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, v| {
                m.max(v.to_f64().unwrap_or(f64::NAN))
            });
            let norm: f64 = row
                .iter()
                .map(|v| (v.to_f64().unwrap_or(f64::NAN) - max).exp())
                .sum();
            let p = (row[t as usize].to_f64().unwrap_or(f64::NAN) - max).exp() / norm;
            (real::<T>(p), real::<T>(mode.apply(p)))
        })
        .unzip();
    Ok((Array1::from(probabilities), Array1::from(weights)))
}

/// Fold: `M_b = sum_p w_{bN+p} * place_p(W_p * bilinear(E_{bN+p}, patch size)) / S`,
/// where `W_p` is patch p's window and S the sum of the windows over the patches that
/// contain a pixel (`Grid::fold_weights`). With `FoldWindow::Box`, the paper's fold,
/// `W_p = 1` and S is the coverage D: the products by one are exact, so the result is
/// that of the plain sum divided by D, bit for bit.
/// `maps` is (B*N, h', w') or (B*N, 1, h', w'), `weights` (B*N,); returns the raw UCAG
/// maps (B, H, W).
pub fn fold<T: Real, D: Dimension, E: Dimension>(
    maps: ArrayView<T, D>,
    weights: ArrayView<T, E>,
    grid: &Grid,
    window: FoldWindow,
) -> Result<Array3<T>, UcagError> {
    let (batch, mh, mw) = check_fold_inputs(maps.shape(), weights.shape(), grid)?;
    let (height, width) = grid.image_size();
    let what = || {
        format!(
            "with this grid gives a result of shape ({batch}, {height}, {width}) {}",
            T::NAME
        )
    };
    let bytes = alloc::check_shape(std::mem::size_of::<T>(), &[batch, height, width])
        .map_err(|e| e.named("maps", what()))?;
    // The result's shape fits: so does every product of its sides below.
    let len = bytes / std::mem::size_of::<T>().max(1);
    let maps = maps.into_dyn();
    let maps = if maps.ndim() == 4 {
        maps.index_axis_move(Axis(1), 0)
    } else {
        maps
    };
    let maps = with_dims::<T, _, Ix3>("maps", maps)?;
    let weights = with_dims::<T, E, Ix1>("weights", weights)?;
    ensure_finite("weights", weights.view())?;
    // NaN/Inf in `maps` are found while folding: every map row the bilinear resize reads is
    // checked as it is read (a separate pass over 0.5 GB of maps would cost half the fold).
    // Row-major maps let the inner loops read map rows as plain slices (borrowed when the
    // caller's array already is row-major, copied once otherwise).
    let maps = standard_layout("maps", maps)?;
    let data = maps.as_slice().expect("standard layout is contiguous");
    let (ph, pw) = grid.patch_size();
    let table = |e: AllocError| {
        e.named(
            "maps",
            format!("with this grid needs bilinear tables for {ph} x {pw} px patches"),
        )
    };
    let rows = linear_taps::<T>(mh, ph).map_err(table)?;
    let counts = |e: AllocError| {
        e.named(
            "maps",
            format!("with this grid needs fold windows for {height} x {width} px"),
        )
    };
    let windows = grid.fold_weights(window).map_err(counts)?;
    let cols = column_tables::<T>(mw, pw, &windows.columns).map_err(table)?;
    let plan = FoldPlan {
        data,
        plane: mh * mw,
        mw,
        weights: weights.view(),
        grid,
        rows,
        cols,
        windows,
    };
    let all_finite = AtomicBool::new(true);
    let mut out = zeros::<T, _>((batch, height, width), len, "maps", what)?;
    // Tasks are horizontal bands of one image (enough of them to keep every thread busy
    // even for B = 1).
    let bands_per_image = (4 * rayon::current_num_threads())
        .div_ceil(batch)
        .clamp(1, height);
    let band_rows = height.div_ceil(bands_per_image);
    out.as_slice_mut()
        .expect("fresh array is contiguous")
        .par_chunks_mut(height * width)
        .enumerate()
        .flat_map(|(b, image)| {
            image
                .par_chunks_mut(band_rows * width)
                .enumerate()
                .map(move |(band, rows)| (b, band * band_rows, rows))
        })
        .for_each_init(
            || vec![T::zero(); mw],
            |blend, (b, y0, band)| {
                if !plan.fold_band(b, y0, band, blend) {
                    all_finite.store(false, Ordering::Relaxed);
                }
            },
        );
    if !all_finite.into_inner() {
        return Err(UcagError::value("maps", "contains NaN or Inf values"));
    }
    Ok(out)
}

/// One column table per column offset: each patch column's two bilinear taps, their
/// weights times that offset's column window.
fn column_tables<T: Real>(
    map_width: usize,
    patch_width: usize,
    profiles: &[Vec<f64>],
) -> Result<Vec<ColumnTaps<T>>, AllocError> {
    let taps = linear_taps::<T>(map_width, patch_width)?;
    let mut tables: Vec<ColumnTaps<T>> = alloc::try_with_capacity(profiles.len())?;
    for profile in profiles {
        let column = taps.iter().zip(profile).map(|(t, &w)| {
            let w: T = real(w);
            (
                t.index[0],
                t.index[1],
                real::<T>(t.weight[0]) * w,
                real::<T>(t.weight[1]) * w,
            )
        });
        tables.push(alloc::try_collect(patch_width, column)?);
    }
    Ok(tables)
}

/// Per patch column: the two map columns it reads and their weights.
type ColumnTaps<T> = Vec<(usize, usize, T, T)>;

/// What every band of a fold reads: the maps (row-major, `plane` = h' * w' values each),
/// the patch weights, the grid, the bilinear row taps, the column tables and the windows.
struct FoldPlan<'a, T: Real> {
    data: &'a [T],
    plane: usize,
    mw: usize,
    weights: ArrayView<'a, T, Ix1>,
    grid: &'a Grid,
    rows: Vec<Taps<2>>,
    cols: Vec<ColumnTaps<T>>,
    windows: crate::grid::FoldWeights,
}

impl<T: Real> FoldPlan<'_, T> {
    /// Folds the rows `y0..` of image `b` that `band` holds (`band.len() / W` rows of width
    /// W); `blend` is a per-thread buffer of w' values. Adds the patches in the order of
    /// docs/algorithm.md section 4, p = 0..N, streaming each map's rows top to bottom (one
    /// sequential read per map, which the prefetcher follows), into band rows that stay in
    /// cache. Per patch row: blend the two map rows (contiguous, so it vectorises), then
    /// gather the columns. Returns whether every map value read was finite.
    fn fold_band(&self, b: usize, y0: usize, band: &mut [T], blend: &mut [T]) -> bool {
        let grid = self.grid;
        let (ph, pw) = grid.patch_size();
        let width = grid.image_size().1;
        let (n, units, mw) = (grid.num_patches(), grid.units(), self.mw);
        let y1 = y0 + band.len() / width;
        let mut finite = true;
        for p in 0..n {
            let (oy, ox) = grid.patch_origin(p);
            let k = b * n + p;
            let map = &self.data[k * self.plane..(k + 1) * self.plane];
            let (row_window, cols) = (&self.windows.rows[p / units], &self.cols[p % units]);
            for y in y0.max(oy)..y1.min(oy + ph) {
                let r = y - oy;
                let weight = self.weights[k] * real(row_window[r]);
                let tap = self.rows[r];
                let (wy0, wy1): (T, T) = (real(tap.weight[0]), real(tap.weight[1]));
                let top = &map[tap.index[0] * mw..(tap.index[0] + 1) * mw];
                let bottom = &map[tap.index[1] * mw..(tap.index[1] + 1) * mw];
                for ((v, &t), &u) in blend.iter_mut().zip(top).zip(bottom) {
                    *v = wy0 * t + wy1 * u;
                }
                // NaN/Inf in a row the resize reads survives the blend (0 * Inf is NaN
                // too), so checking the blend checks the input in the same pass.
                finite &= blend.iter().fold(true, |ok, v| ok & v.is_finite());
                let line = &mut band[(y - y0) * width + ox..(y - y0) * width + ox + pw];
                for (out, &(c0, c1, wx0, wx1)) in line.iter_mut().zip(cols) {
                    *out = *out + weight * (wx0 * blend[c0] + wx1 * blend[c1]);
                }
            }
        }
        for (line, y) in band.chunks_mut(width).zip(y0..y1) {
            let row_sum = self.windows.row_sums[y];
            for (out, &column_sum) in line.iter_mut().zip(&self.windows.column_sums) {
                *out = *out / real(row_sum * column_sum);
            }
        }
        finite
    }
}

fn real<T: Real>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use ndarray::Array;

    /// The weights alone.
    fn confidence<T: Real, D: Dimension>(
        logits: ArrayView<T, D>,
        targets: &[i64],
        mode: Weighting,
    ) -> Result<Array1<T>, UcagError> {
        confidence_with_probabilities(logits, targets, mode).map(|(_, weights)| weights)
    }

    #[test]
    fn fold_of_constant_maps_is_constant() {
        for (image, units, map) in [
            ((224, 224), 6, (11, 11)),
            ((57, 101), 4, (7, 9)),
            ((30, 30), 3, (30, 30)),
        ] {
            let grid = Grid::new(image, units, None, 2.6, None).unwrap();
            let rows = 2 * grid.num_patches();
            let maps = Array3::<f64>::from_elem((rows, map.0, map.1), 0.7);
            let weights = Array1::<f64>::from_elem(rows, 2.0);
            let out = fold(maps.view(), weights.view(), &grid, FoldWindow::Box).unwrap();
            assert_eq!(out.shape(), &[2, image.0, image.1]);
            // sum over covering patches of 2 * 0.7, divided by their count
            out.iter()
                .for_each(|&v| assert_relative_eq!(v, 1.4, max_relative = 1e-12));
        }
    }

    #[test]
    fn tapered_folds_keep_constants_and_remove_the_seams() {
        // Constant maps under patch weights that differ: the box fold jumps where a patch
        // starts or ends; a tapered window lets each patch in gradually.
        let grid = Grid::new((224, 224), 6, None, 2.6, None).unwrap();
        let n = grid.num_patches();
        let maps = Array3::<f64>::from_elem((n, 14, 14), 1.0);
        let weights = Array1::from_iter((0..n).map(|p| 1.0 + ((p * 7) % 5) as f64));
        let steepest = |window| {
            let out = fold(maps.view(), weights.view(), &grid, window).unwrap();
            let out = out.index_axis(Axis(0), 0);
            let across = (&out.slice(ndarray::s![.., 1..]) - &out.slice(ndarray::s![.., ..-1]))
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            let down = (&out.slice(ndarray::s![1.., ..]) - &out.slice(ndarray::s![..-1, ..]))
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            across.max(down)
        };
        let (boxed, linear, cosine) = (
            steepest(FoldWindow::Box),
            steepest(FoldWindow::Linear),
            steepest(FoldWindow::Cosine),
        );
        assert!(boxed > 0.3, "box fold: steepest step {boxed}");
        assert!(linear < boxed / 10.0, "linear {linear} vs box {boxed}");
        assert!(cosine < boxed / 10.0, "cosine {cosine} vs box {boxed}");
        // Equal weights: every window gives back the constant (the sum of windows divides).
        for window in [FoldWindow::Linear, FoldWindow::Cosine] {
            let ones = Array1::<f64>::from_elem(n, 3.0);
            let out = fold(maps.view(), ones.view(), &grid, window).unwrap();
            out.iter()
                .for_each(|&v| assert_relative_eq!(v, 3.0, max_relative = 1e-12));
        }
    }

    #[test]
    fn fold_places_each_patch_at_its_offset() {
        // One patch non-zero: the output is its value over that patch's area divided by D.
        let grid = Grid::new((10, 12), 2, Some((6, 8)), 1.0, None).unwrap();
        let mut maps = Array3::<f32>::zeros((4, 6, 8));
        maps.index_axis_mut(Axis(0), 3).fill(1.0); // patch (1, 1) at offset (4, 4)
        let weights = Array1::from(vec![1.0f32, 1.0, 1.0, 3.0]);
        let out = fold(maps.view(), weights.view(), &grid, FoldWindow::Box).unwrap();
        let d = grid.coverage().unwrap();
        for y in 0..10 {
            for x in 0..12 {
                let inside = y >= 4 && x >= 4;
                let expected = if inside { 3.0 / d[(y, x)] as f32 } else { 0.0 };
                assert_relative_eq!(out[(0, y, x)], expected);
            }
        }
    }

    #[test]
    fn unfold_of_constant_image_is_constant_and_units_one_is_resize() {
        let grid = Grid::new((20, 16), 3, None, 2.6, None).unwrap();
        let images = Array4::<f32>::from_elem((2, 3, 20, 16), -0.25);
        let out = unfold(images.view(), &grid).unwrap();
        let (sh, sw) = grid.scaled_size();
        assert_eq!(out.shape(), &[18, 3, sh, sw]);
        // float32 weights (as in PyTorch) sum to 1 only within a few ulp
        out.iter()
            .for_each(|&v| assert_relative_eq!(v, -0.25, max_relative = 4e-6));

        // A scaled size equal to the patch size is the identity crop.
        let grid = Grid::new((8, 8), 2, Some((5, 5)), 1.0, None).unwrap();
        let images = Array::from_shape_fn((1, 1, 8, 8), |(_, _, y, x)| (y * 8 + x) as f64);
        let out = unfold(images.view(), &grid).unwrap();
        for p in 0..4 {
            let (oy, ox) = grid.patch_origin(p);
            for y in 0..5 {
                for x in 0..5 {
                    assert_eq!(out[(p, 0, y, x)], images[(0, 0, oy + y, ox + x)]);
                }
            }
        }
    }

    #[test]
    fn confidence_modes() {
        let logits = Array2::from_shape_vec((2, 3), vec![1.0f64, 2.0, 3.0, 0.0, 0.0, 0.0]).unwrap();
        let z: f64 = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).sum();
        let p = confidence(logits.view(), &[2, 1], Weighting::Prob).unwrap();
        assert_relative_eq!(p[0], 3.0f64.exp() / z, max_relative = 1e-14);
        assert_relative_eq!(p[1], 1.0 / 3.0, max_relative = 1e-14);
        let e = confidence(logits.view(), &[2, 1], Weighting::Exp).unwrap();
        assert_relative_eq!(e[1], (1.0f64 / 3.0).exp(), max_relative = 1e-14);
        let u = confidence(logits.view(), &[0, 0], Weighting::Uniform).unwrap();
        assert_eq!(u.to_vec(), vec![1.0, 1.0]);
        // large logits do not overflow
        let big = Array2::from_shape_vec((1, 2), vec![1000.0f32, 0.0]).unwrap();
        assert_relative_eq!(
            confidence(big.view(), &[0], Weighting::Prob).unwrap()[0],
            1.0
        );
    }

    #[test]
    fn probabilities_and_weights_from_one_call_equal_two_calls_bit_for_bit() {
        let logits = Array::from_shape_fn((23, 300), |(r, k)| {
            ((r * 7919 + k * 104_729) % 1000) as f64 / 40.0 - 12.5
        });
        let targets: Vec<i64> = (0..23).map(|r| (r * 37 % 300) as i64).collect();
        let logits32 = logits.mapv(|v| v as f32);
        for mode in [Weighting::Exp, Weighting::Prob, Weighting::Uniform] {
            let (p, w) = confidence_with_probabilities(logits.view(), &targets, mode).unwrap();
            assert_eq!(
                p,
                confidence(logits.view(), &targets, Weighting::Prob).unwrap()
            );
            assert_eq!(w, confidence(logits.view(), &targets, mode).unwrap());
            let (p, w) = confidence_with_probabilities(logits32.view(), &targets, mode).unwrap();
            assert_eq!(
                p,
                confidence(logits32.view(), &targets, Weighting::Prob).unwrap()
            );
            assert_eq!(w, confidence(logits32.view(), &targets, mode).unwrap());
        }
    }

    #[test]
    fn views_of_any_dimensionality_are_checked_before_use() {
        use ndarray::{ArrayD, IxDyn};
        let grid = Grid::new((8, 8), 2, Some((5, 5)), 1.0, None).unwrap();
        let images = ArrayD::<f32>::zeros(IxDyn(&[3, 8, 8]));
        assert_eq!(
            unfold(images.view(), &grid).unwrap_err().to_string(),
            "images: must have shape (B, C, H, W), got 3 dimensions [3, 8, 8]"
        );
        let maps = Array::from_shape_fn((4, 3, 3), |(k, y, x)| (k * 9 + y * 3 + x) as f64);
        let weights = Array1::from(vec![1.0, 2.0, 3.0, 4.0]);
        let expected = fold(maps.view(), weights.view(), &grid, FoldWindow::Box).unwrap();
        let with_channel = maps.clone().into_shape_with_order((4, 1, 3, 3)).unwrap();
        let got = fold(
            with_channel.into_dyn().view(),
            weights.view(),
            &grid,
            FoldWindow::Box,
        )
        .unwrap();
        assert_eq!(got, expected);
        let channels = ArrayD::<f64>::zeros(IxDyn(&[4, 2, 3, 3]));
        let err = fold(channels.view(), weights.view(), &grid, FoldWindow::Box).unwrap_err();
        assert_eq!(err.argument(), "maps");
        let logits = ArrayD::<f64>::zeros(IxDyn(&[6]));
        let err = confidence(logits.view(), &[0], Weighting::Exp).unwrap_err();
        assert_eq!(
            err.to_string(),
            "logits: must have shape (rows, K), got [6]"
        );
    }

    #[test]
    fn results_beyond_memory_are_errors_naming_the_argument() {
        // 4096 patches scaled to 16384 x 16384: 12 TiB
        let grid = Grid::new((64, 64), 64, Some((1, 1)), 16384.0, None).unwrap();
        let images = Array4::<f32>::zeros((1, 3, 64, 64));
        let err = unfold(images.view(), &grid).unwrap_err();
        assert!(matches!(err, UcagError::Memory { .. }), "{err}");
        assert!(
            err.to_string().starts_with(
                "images: with this grid (4096 patches of 1 x 1 px scaled to 16384 x 16384) gives \
                 a result of shape (4096, 3, 16384, 16384) float32, which needs 12.0 TiB \
                 (13194139533312 bytes), more than the memory this process can have ("
            ),
            "{err}"
        );
        // a tiny result through a huge per-thread resize buffer (2^20 patch rows x 32768)
        let grid = Grid::new((1 << 20, 1), 1, Some((1 << 20, 1)), 1.0, Some((1, 32768))).unwrap();
        let images = Array4::<f32>::zeros((1, 1, 1 << 20, 1));
        let err = unfold(images.view(), &grid).unwrap_err();
        assert!(matches!(err, UcagError::Memory { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("images: needs a 1048576 x 32768 float64 resize buffer"),
            "{err}"
        );
        // 2^48 pixels of float64: 2 PiB
        let grid = Grid::new((1 << 24, 1 << 24), 2, None, 1e-9, None).unwrap();
        let maps = Array3::<f64>::zeros((4, 1, 1));
        let err = fold(maps.view(), Array1::zeros(4).view(), &grid, FoldWindow::Box).unwrap_err();
        assert!(matches!(err, UcagError::Memory { .. }), "{err}");
        assert!(
            err.to_string().starts_with(
                "maps: with this grid gives a result of shape (1, 16777216, 16777216) float64, \
                 which needs 2.0 PiB"
            ),
            "{err}"
        );
    }

    #[test]
    fn shapes_that_no_array_can_have_are_refused() {
        let grid = Grid::new((8, 8), 2, Some((5, 5)), 1.0, None).unwrap();
        let huge = usize::MAX / 2;
        let err = check_images(&[huge, huge, 8, 8], &grid).unwrap_err();
        assert_eq!(err.argument(), "images");
        assert!(err.to_string().contains("more elements than"), "{err}");
        let err = check_fold_inputs(&[4, huge, huge], &[4], &grid).unwrap_err();
        assert_eq!(err.argument(), "maps");
        let err = check_confidence_inputs(&[1, usize::MAX], &[0]).unwrap_err();
        assert_eq!(err.argument(), "logits");
        // the largest class count of an addressable shape: no overflow comparing targets
        assert_eq!(
            check_confidence_inputs(&[1, isize::MAX as usize], &[i64::MAX - 1]),
            Ok(isize::MAX as usize)
        );
    }

    #[test]
    fn strided_maps_fold_like_contiguous_ones() {
        let grid = Grid::new((10, 12), 2, Some((6, 8)), 1.0, None).unwrap();
        let maps = Array::from_shape_fn((4, 5, 7), |(k, y, x)| (k * 35 + y * 7 + x) as f32);
        let weights = Array1::from(vec![1.0f32, 2.0, 3.0, 4.0]);
        let expected = fold(maps.view(), weights.view(), &grid, FoldWindow::Box).unwrap();
        let transposed = maps
            .clone()
            .permuted_axes([0, 2, 1])
            .as_standard_layout()
            .to_owned();
        let strided = transposed.view().permuted_axes([0, 2, 1]);
        assert!(!strided.is_standard_layout());
        assert_eq!(
            fold(strided, weights.view(), &grid, FoldWindow::Box).unwrap(),
            expected
        );
    }

    #[test]
    fn bad_inputs_name_their_argument() {
        let grid = Grid::new((8, 8), 2, Some((5, 5)), 1.0, None).unwrap();
        let maps = Array3::<f32>::zeros((4, 3, 3));
        let err = fold(
            maps.view(),
            Array1::<f32>::zeros(3).view(),
            &grid,
            FoldWindow::Box,
        )
        .unwrap_err();
        assert_eq!(err.argument(), "weights");
        let err = fold(
            Array3::<f32>::zeros((6, 3, 3)).view(),
            Array1::zeros(6).view(),
            &grid,
            FoldWindow::Box,
        )
        .unwrap_err();
        assert_eq!(err.argument(), "maps");
        let mut nan = maps.clone();
        nan[(1, 1, 1)] = f32::NAN;
        let err = fold(nan.view(), Array1::zeros(4).view(), &grid, FoldWindow::Box).unwrap_err();
        assert_eq!(err.argument(), "maps");
        let err = unfold(Array4::<f32>::zeros((1, 1, 9, 8)).view(), &grid).unwrap_err();
        assert_eq!(err.argument(), "images");
        let err = unfold(Array4::<f32>::zeros((0, 1, 8, 8)).view(), &grid).unwrap_err();
        assert_eq!(err.argument(), "images");
        // a result too large to address is an error, not a panic
        let huge = Grid::new((1 << 31, 1 << 31), 2, None, 1e-9, None).unwrap();
        let maps = Array3::<f32>::zeros((4, 1, 1));
        let err = fold(maps.view(), Array1::zeros(4).view(), &huge, FoldWindow::Box).unwrap_err();
        assert_eq!(err.argument(), "maps");
        assert!(err.to_string().contains("too large"), "{err}");
        let logits = Array2::<f32>::zeros((2, 3));
        assert_eq!(
            confidence(logits.view(), &[0], Weighting::Exp)
                .unwrap_err()
                .argument(),
            "targets"
        );
        assert_eq!(
            confidence(logits.view(), &[0, 3], Weighting::Exp)
                .unwrap_err()
                .argument(),
            "targets"
        );
        assert_eq!(
            "softmax".parse::<Weighting>().unwrap_err().argument(),
            "mode"
        );
    }
}

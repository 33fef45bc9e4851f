//! The UCAG kernels on libtorch tensors through `tch`: they run on the tensor's own
//! device and dtype, never copying the input to the host. Unfold and fold issue the same
//! ATen resampling calls as `F.interpolate`, so they match PyTorch bit for bit.
//!
//! Sizes from the arguments are checked before libtorch allocates (`ucag::alloc`): a
//! result or intermediate that cannot be addressed is a ValueError; one on the CPU beyond
//! the memory the process can have a MemoryError; both name the argument. An allocation
//! libtorch itself refuses (CUDA out of memory, a CPU allocation failure) is a
//! MemoryError naming the argument too.

use tch::{Device, Kind, Tensor};
use ucag::alloc;
use ucag::grid::FoldWeights;
use ucag::kernels::{check_confidence_inputs, check_fold_inputs, check_images, Weighting};
use ucag::{FoldWindow, Grid, UcagError};

/// A tensor's sizes (never negative).
fn dims(t: &Tensor) -> Vec<usize> {
    t.size()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect()
}

/// A size as libtorch takes it. Grid and tensor sizes are at most isize::MAX, so this
/// fails only on a platform whose usize is wider than i64.
fn i64_size(argument: &'static str, v: usize) -> Result<i64, UcagError> {
    i64::try_from(v)
        .map_err(|_| UcagError::value(argument, format!("size {v} does not fit libtorch's int64")))
}

/// Whether a libtorch error is an allocation failure (its messages, CPU and CUDA).
fn is_out_of_memory(text: &str) -> bool {
    [
        "out of memory",
        "can't allocate memory",
        "Cannot allocate memory",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// libtorch errors on arguments we already validated are internal failures (out of memory,
/// a dtype libtorch lacks on this device); name the argument they came from. Allocation
/// failures are `Memory` errors (Python MemoryError), the rest `Value` errors.
pub fn tch_error(argument: &'static str) -> impl Fn(tch::TchError) -> UcagError {
    move |e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("libtorch error").to_string();
        if is_out_of_memory(&text) {
            UcagError::memory(
                argument,
                format!("libtorch could not allocate memory: {first}"),
            )
        } else {
            UcagError::value(argument, format!("libtorch failed: {first}"))
        }
    }
}

/// Checks that a tensor of `shape` and `kind` could be allocated on `device` before
/// libtorch tries: addressable everywhere, and on the CPU within the memory the process
/// can have (under overcommit libtorch's CPU allocator would grant more, and the process
/// be killed when the pages are touched). `what` describes it for the message.
fn check_tensor_size(
    argument: &'static str,
    what: impl Fn() -> String,
    shape: &[usize],
    kind: Kind,
    device: Device,
) -> Result<(), UcagError> {
    match alloc::check_shape(kind.elt_size_in_bytes(), shape) {
        Ok(_) => Ok(()),
        Err(alloc::AllocError::BeyondMemory { .. }) if device != Device::Cpu => Ok(()),
        Err(e) => Err(e.named(argument, what())),
    }
}

/// A device as torch writes it: "cpu", "cuda:0".
fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Float => "float32",
        Kind::Double => "float64",
        _ => "tensor",
    }
}

fn ensure_floating(argument: &'static str, t: &Tensor) -> Result<(), UcagError> {
    let kind = t.f_kind().map_err(|_| {
        UcagError::type_error(
            argument,
            "has a dtype ucag does not support; use float32 or float64",
        )
    })?;
    match kind {
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => Ok(()),
        other => Err(UcagError::type_error(
            argument,
            format!(
                "must be a floating-point tensor (float16/bfloat16/float32/float64), got {other:?}"
            ),
        )),
    }
}

fn ensure_finite(argument: &'static str, t: &Tensor) -> Result<(), UcagError> {
    // min and max propagate NaN and reach +-Inf: one fused pass with no temporaries, and
    // one host read (a sync on CUDA). `isfinite().all()` would allocate several full copies.
    let extremes = t
        .f_aminmax(None, false)
        .and_then(|(lo, hi)| Tensor::f_stack(&[lo, hi], 0))
        .and_then(|e| e.f_to_kind(Kind::Double))
        .and_then(|e| e.f_to(Device::Cpu))
        .map_err(tch_error(argument))?;
    let extremes = Vec::<f64>::try_from(&extremes).map_err(tch_error(argument))?;
    if extremes.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(UcagError::value(argument, "contains NaN or Inf values"))
    }
}

fn ensure_same_device(
    argument: &'static str,
    t: &Tensor,
    reference: &'static str,
    device: Device,
) -> Result<(), UcagError> {
    if t.device() != device {
        return Err(UcagError::value(
            argument,
            format!(
                "is on {:?} but {reference} is on {device:?}; move both to one device",
                t.device()
            ),
        ));
    }
    Ok(())
}

/// The precision the fold accumulates in: float32 at least, so half inputs do not lose
/// the sum of 36 overlapping patches.
fn accumulation_kind(kind: Kind) -> Kind {
    match kind {
        Kind::Double => Kind::Double,
        _ => Kind::Float,
    }
}

/// Bicubic unfold: (B, C, H, W) -> (B*N, C, S_h, S_w), row b*N + p = patch p of image b.
pub fn unfold(images: &Tensor, grid: &Grid) -> Result<Tensor, UcagError> {
    let shape = dims(images);
    ensure_floating("images", images)?;
    let batch = check_images(&shape, grid)?;
    ensure_finite("images", images)?;
    let _no_grad = tch::no_grad_guard();
    let n = grid.num_patches();
    let (ph, pw) = grid.patch_size();
    let (sh, sw) = grid.scaled_size();
    let (kind, device) = (images.kind(), images.device());
    let what = || {
        format!(
            "with this grid ({n} patches of {ph} x {pw} px scaled to {sh} x {sw}) gives a result of \
             shape ({}, {}, {sh}, {sw}) {} on {}",
            batch as u128 * n as u128,
            shape[1],
            kind_name(kind),
            device_name(device)
        )
    };
    check_tensor_size("images", what, &[batch, n, shape[1], sh, sw], kind, device)?;
    // The result's shape fits isize: so does each of its sides and products below.
    let size = |v: usize| i64_size("images", v);
    let (batch, n, channels) = (size(batch)?, size(n)?, size(shape[1])?);
    let (ph, pw, sh, sw) = (size(ph)?, size(pw)?, size(sh)?, size(sw)?);
    let err = tch_error("images");
    let out = Tensor::f_empty([batch, n, channels, sh, sw], (kind, device)).map_err(&err)?;
    for p in 0..grid.num_patches() {
        let (oy, ox) = grid.patch_origin(p);
        let (oy, ox) = (size(oy)?, size(ox)?);
        let crop = images
            .f_narrow(2, oy, ph)
            .and_then(|c| c.f_narrow(3, ox, pw))
            .map_err(&err)?;
        // (B, C, S_h, S_w) written into slot p of every image.
        let slot = out.f_select(1, size(p)?).map_err(&err)?;
        let _ = crop
            .f_upsample_bicubic2d_out(&slot, [sh, sw], false, None, None)
            .map_err(&err)?;
    }
    out.f_reshape([batch * n, channels, sh, sw]).map_err(err)
}

/// Softmax probability p of each row's target class and its weight, from one read of the
/// targets and one softmax: (probabilities, weights), each (rows,) in the logits' dtype on
/// their device (p in the accumulation precision, each result cast to the logits' dtype
/// once).
pub fn confidence_with_probabilities(
    logits: &Tensor,
    targets: &Tensor,
    mode: Weighting,
) -> Result<(Tensor, Tensor), UcagError> {
    ensure_floating("logits", logits)?;
    ensure_same_device("targets", targets, "logits", logits.device())?;
    let shape = dims(logits);
    let target_shape = dims(targets);
    if target_shape.len() != 1 {
        return Err(UcagError::value(
            "targets",
            format!("must be 1-D (rows,), got shape {target_shape:?}"),
        ));
    }
    let target_kind = targets.f_kind().ok();
    if !matches!(
        target_kind,
        Some(Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8)
    ) {
        return Err(UcagError::type_error(
            "targets",
            format!("must hold integer class indices, got {target_kind:?}"),
        ));
    }
    let err = tch_error("logits");
    let targets = targets
        .f_to_kind(Kind::Int64)
        .map_err(tch_error("targets"))?;
    // Range checks need the values; targets are tiny, so read them (one sync on CUDA).
    let host_targets: Vec<i64> =
        Vec::<i64>::try_from(&targets.f_to(Device::Cpu).map_err(tch_error("targets"))?)
            .map_err(tch_error("targets"))?;
    check_confidence_inputs(&shape, &host_targets)?;
    ensure_finite("logits", logits)?;
    let _no_grad = tch::no_grad_guard();
    let kind = accumulation_kind(logits.kind());
    let probabilities = logits
        .f_softmax(1, kind)
        .and_then(|s| s.f_gather(1, &targets.f_unsqueeze(1)?, false))
        .and_then(|g| g.f_squeeze_dim(1))
        .map_err(&err)?;
    let out = logits.kind();
    let weights = match mode {
        Weighting::Exp => probabilities.f_exp().and_then(|e| e.f_to_kind(out)),
        // a tensor of its own (a cast to the same dtype would return the probabilities)
        Weighting::Prob => probabilities.f_to_dtype(out, false, true),
        Weighting::Uniform => probabilities.f_ones_like().and_then(|o| o.f_to_kind(out)),
    }
    .map_err(&err)?;
    let probabilities = probabilities.f_to_kind(out).map_err(err)?;
    Ok((probabilities, weights))
}

/// Fold partial maps (B*N, h', w') or (B*N, 1, h', w') with weights (B*N,) into raw UCAG
/// maps (B, H, W) in the maps' dtype on their device. `FoldWindow::Box` is the paper's
/// fold (divided by the coverage D); a tapered window multiplies each weighted patch by
/// its window and divides by the sum of the windows (`Grid::fold_weights`).
pub fn fold(
    maps: &Tensor,
    weights: &Tensor,
    grid: &Grid,
    window: FoldWindow,
) -> Result<Tensor, UcagError> {
    ensure_floating("maps", maps)?;
    ensure_floating("weights", weights)?;
    ensure_same_device("weights", weights, "maps", maps.device())?;
    let (batch, mh, mw) = check_fold_inputs(&dims(maps), &dims(weights), grid)?;
    ensure_finite("weights", weights)?;
    let _no_grad = tch::no_grad_guard();
    let err = tch_error("maps");
    let device = maps.device();
    let kind = accumulation_kind(maps.kind());
    let (height, width) = grid.image_size();
    let (ph, pw) = grid.patch_size();
    let n = grid.num_patches();
    // The largest buffers: the resized (and weighted) maps, (B*N, h, w), and the result.
    let rows = batch * n; // the maps' row count
    let resized_what = || {
        format!(
            "with this grid gives resized maps of shape ({rows}, {ph}, {pw}) {} on {}",
            kind_name(kind),
            device_name(device)
        )
    };
    check_tensor_size("maps", resized_what, &[rows, ph, pw], kind, device)?;
    let result_what = || {
        format!(
            "with this grid gives a result of shape ({batch}, {height}, {width}) {} on {}",
            kind_name(kind),
            device_name(device)
        )
    };
    check_tensor_size("maps", result_what, &[batch, height, width], kind, device)?;
    let size = |v: usize| i64_size("maps", v);
    let (batch, n, rows) = (size(batch)?, size(n)?, size(rows)?);
    let (ph, pw, mh, mw) = (size(ph)?, size(pw)?, size(mh)?, size(mw)?);
    let resized = resize_maps(maps, [rows, mh, mw], [ph, pw], kind)?;
    let weights = weights
        .f_to_kind(kind)
        .and_then(|w| w.f_reshape([rows, 1, 1, 1]))
        .map_err(&err)?;
    let mut weighted = resized
        .f_mul(&weights)
        .and_then(|r| r.f_reshape([batch, n, ph, pw]))
        .map_err(&err)?;
    let windows = grid
        .fold_weights(window)
        .map_err(|e| e.named("maps", "with this grid needs the fold windows"))?;
    if window != FoldWindow::Box {
        let windows = patch_windows(&windows, [n, ph, pw], kind, device)?;
        weighted = weighted.f_mul(&windows).map_err(&err)?;
    }
    let mut canvas = place_patches(&weighted, grid, [batch, size(height)?, size(width)?])?;
    let coverage = outer_sums(&windows, kind, device)?;
    let _ = canvas.f_div_(&coverage).map_err(&err)?;
    canvas.f_to_kind(maps.kind()).map_err(err)
}

/// The partial maps as (rows, 1, h, w) in `kind`, bilinearly resized from (h', w') to the
/// patch size (h, w), checked finite.
fn resize_maps(
    maps: &Tensor,
    [rows, mh, mw]: [i64; 3],
    [ph, pw]: [i64; 2],
    kind: Kind,
) -> Result<Tensor, UcagError> {
    let err = tch_error("maps");
    let mut resized = maps
        .f_reshape([rows, 1, mh, mw])
        .and_then(|m| m.f_to_kind(kind))
        .map_err(&err)?;
    if (mh, mw) != (ph, pw) {
        resized = resized
            .f_upsample_bilinear2d([ph, pw], false, None, None)
            .map_err(&err)?;
    }
    // Checked after resizing: the resized maps hold every value the fold reads and are
    // often several times smaller than the maps (a full pass over 0.5 GB of partial maps
    // would cost a third of the fold). With down-sampling, bilinear skips some pixels; a
    // NaN there cannot reach the result.
    ensure_finite("maps", &resized)?;
    Ok(resized)
}

/// Each patch's window, (N, h, w) on `device`: patch p = (i, j) weighs its pixels by
/// rows[i] x columns[j] (units x side values, fewer than the resized maps whose size was
/// checked).
fn patch_windows(
    windows: &FoldWeights,
    [n, ph, pw]: [i64; 3],
    kind: Kind,
    device: Device,
) -> Result<Tensor, UcagError> {
    let profiles = |v: &[Vec<f64>]| -> Result<Tensor, tch::TchError> {
        let flat: Vec<f64> = v.iter().flatten().copied().collect();
        Tensor::f_from_slice(&flat)?.f_reshape([i64::try_from(v.len()).unwrap_or(i64::MAX), -1])
    };
    profiles(&windows.rows)
        .and_then(|rows| {
            let cols = profiles(&windows.columns)?;
            // outer product over the (i, j) pairs, row-major like the patches
            rows.f_unsqueeze(1)?
                .f_unsqueeze(3)?
                .f_mul(&cols.f_unsqueeze(0)?.f_unsqueeze(2)?)?
                .f_reshape([n, ph, pw])
        })
        .and_then(|w| w.f_to_kind(kind))
        .and_then(|w| w.f_to(device))
        .map_err(tch_error("maps"))
}

/// The weighted patches (B, N, h, w) added onto a zero canvas (B, H, W) at their origins,
/// in the order p = 0..N (docs/algorithm.md section 4).
fn place_patches(
    weighted: &Tensor,
    grid: &Grid,
    canvas_shape: [i64; 3],
) -> Result<Tensor, UcagError> {
    let err = tch_error("maps");
    let size = |v: usize| i64_size("maps", v);
    let (ph, pw) = grid.patch_size();
    let (ph, pw) = (size(ph)?, size(pw)?);
    let canvas =
        Tensor::f_zeros(canvas_shape, (weighted.kind(), weighted.device())).map_err(&err)?;
    for p in 0..grid.num_patches() {
        let (oy, ox) = grid.patch_origin(p);
        let (oy, ox) = (size(oy)?, size(ox)?);
        let mut window = canvas
            .f_narrow(1, oy, ph)
            .and_then(|c| c.f_narrow(2, ox, pw))
            .map_err(&err)?;
        let _ = window
            .f_add_(&weighted.f_select(1, size(p)?).map_err(&err)?)
            .map_err(&err)?;
    }
    Ok(canvas)
}

/// The fold's divisor on `device`: the outer product of the window sums along the axes
/// (for `FoldWindow::Box` the duplication matrix D, exactly).
fn outer_sums(windows: &FoldWeights, kind: Kind, device: Device) -> Result<Tensor, UcagError> {
    Tensor::f_from_slice(&windows.row_sums)
        .and_then(|r| r.f_outer(&Tensor::f_from_slice(&windows.column_sums)?))
        .and_then(|d| d.f_to_kind(kind))
        .and_then(|d| d.f_to(device))
        .map_err(tch_error("maps"))
}

//! The UCAG kernels on libtorch tensors through `tch`: they run on the tensor's own
//! device and dtype, never copying the input to the host. Unfold and fold issue the same
//! ATen resampling calls as `F.interpolate`, so they match PyTorch bit for bit.

use tch::{Device, Kind, Tensor};
use ucag::kernels::{check_confidence_inputs, check_fold_inputs, check_images, Weighting};
use ucag::{Grid, UcagError};

fn dims(t: &Tensor) -> Vec<usize> {
    t.size().iter().map(|&d| d as usize).collect()
}

/// libtorch errors on arguments we already validated are internal failures (out of memory,
/// a dtype libtorch lacks on this device); name the argument they came from.
fn tch_error(argument: &'static str) -> impl Fn(tch::TchError) -> UcagError {
    move |e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("libtorch error").to_string();
        UcagError::value(argument, format!("libtorch failed: {first}"))
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
    let batch = check_images(&shape, grid)? as i64;
    ensure_finite("images", images)?;
    let _no_grad = tch::no_grad_guard();
    let channels = shape[1] as i64;
    let n = grid.num_patches() as i64;
    let (ph, pw) = grid.patch_size();
    let (sh, sw) = grid.scaled_size();
    let (sh, sw) = (sh as i64, sw as i64);
    let err = tch_error("images");
    let out = Tensor::f_empty(
        [batch, n, channels, sh, sw],
        (images.kind(), images.device()),
    )
    .map_err(&err)?;
    for p in 0..grid.num_patches() {
        let (oy, ox) = grid.patch_origin(p);
        let crop = images
            .f_narrow(2, oy as i64, ph as i64)
            .and_then(|c| c.f_narrow(3, ox as i64, pw as i64))
            .map_err(&err)?;
        // (B, C, S_h, S_w) written into slot p of every image.
        let slot = out.f_select(1, p as i64).map_err(&err)?;
        let _ = crop
            .f_upsample_bicubic2d_out(&slot, [sh, sw], false, None, None)
            .map_err(&err)?;
    }
    out.f_reshape([batch * n, channels, sh, sw]).map_err(err)
}

/// Softmax probability of each row's target class, turned into a weight; (rows,) in the
/// logits' dtype on their device.
pub fn confidence(logits: &Tensor, targets: &Tensor, mode: Weighting) -> Result<Tensor, UcagError> {
    confidence_with_probabilities(logits, targets, mode).map(|(_, weights)| weights)
}

/// Softmax probability p of each row's target class and its weight, from one read of the
/// targets and one softmax: (probabilities, weights), each (rows,) in the logits' dtype on
/// their device. Both equal what `confidence` gives with `Weighting::Prob` and with `mode`,
/// bit for bit (p in the accumulation precision, each result cast to the logits' dtype once).
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
/// maps (B, H, W) in the maps' dtype on their device.
pub fn fold(maps: &Tensor, weights: &Tensor, grid: &Grid) -> Result<Tensor, UcagError> {
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
    let (ph, pw) = (grid.patch_size().0 as i64, grid.patch_size().1 as i64);
    let n = grid.num_patches() as i64;
    let rows = batch as i64 * n;
    let mut resized = maps
        .f_reshape([rows, 1, mh as i64, mw as i64])
        .and_then(|m| m.f_to_kind(kind))
        .map_err(&err)?;
    if (mh as i64, mw as i64) != (ph, pw) {
        resized = resized
            .f_upsample_bilinear2d([ph, pw], false, None, None)
            .map_err(&err)?;
    }
    // Checked after resizing: the resized maps hold every value the fold reads and are
    // often several times smaller than the maps (a full pass over 0.5 GB of partial maps
    // would cost a third of the fold). With down-sampling, bilinear skips some pixels; a
    // NaN there cannot reach the result.
    ensure_finite("maps", &resized)?;
    let weights = weights
        .f_to_kind(kind)
        .and_then(|w| w.f_reshape([rows, 1, 1, 1]))
        .map_err(&err)?;
    let weighted = resized
        .f_mul(&weights)
        .and_then(|r| r.f_reshape([batch as i64, n, ph, pw]))
        .map_err(&err)?;
    let mut canvas = Tensor::f_zeros([batch as i64, height as i64, width as i64], (kind, device))
        .map_err(&err)?;
    for p in 0..grid.num_patches() {
        let (oy, ox) = grid.patch_origin(p);
        let mut window = canvas
            .f_narrow(1, oy as i64, ph)
            .and_then(|c| c.f_narrow(2, ox as i64, pw))
            .map_err(&err)?;
        let _ = window
            .f_add_(&weighted.f_select(1, p as i64).map_err(&err)?)
            .map_err(&err)?;
    }
    let coverage = coverage_tensor(grid, kind, device).map_err(&err)?;
    let _ = canvas.f_div_(&coverage).map_err(&err)?;
    canvas.f_to_kind(maps.kind()).map_err(err)
}

/// The duplication matrix D on `device`, built from the two axis counts (outer product).
fn coverage_tensor(grid: &Grid, kind: Kind, device: Device) -> Result<Tensor, tch::TchError> {
    let to_f64 = |v: Vec<u32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    let rows = Tensor::f_from_slice(&to_f64(grid.row_coverage()))?;
    let cols = Tensor::f_from_slice(&to_f64(grid.column_coverage()))?;
    rows.f_outer(&cols)?.f_to_kind(kind)?.f_to(device)
}

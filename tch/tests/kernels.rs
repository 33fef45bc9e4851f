//! The libtorch kernels against the ndarray kernels of the `ucag` core, on small CPU
//! tensors, and their errors. Run without Python:
//! `LIBTORCH_USE_PYTORCH=1 cargo test -p ucag-tch --no-default-features` (in the venv).
//!
//! What holds (as in tests/test_kernels.py): unfold and fold issue F.interpolate's ATen
//! calls, the core computes the same taps in its own order, so the two agree within
//! rounding (float32: 1e-5 of the map's magnitude, float64: 1e-12). Confidence computes the
//! softmax in the accumulation precision (float32 for float32 logits) and the core in f64:
//! within a few float32 ulp. Bit for bit: a crop (scale 1) and a fold at the patch size,
//! "uniform" weights, and `confidence_with_probabilities` against two separate calls.

use ndarray::{ArrayD, IxDyn};
use tch::{Device, Kind, Tensor};
use ucag::kernels as core;
use ucag::{FoldWindow, Grid, UcagError, Weighting};
use ucag_tch::kernels;

const MODES: [Weighting; 3] = [Weighting::Exp, Weighting::Prob, Weighting::Uniform];
const CPU: Device = Device::Cpu;
const WINDOWS: [FoldWindow; 3] = [FoldWindow::Box, FoldWindow::Linear, FoldWindow::Cosine];

/// Test data of its own per test (libtorch's global generator is shared by the test
/// threads, so its draws would depend on their interleaving): splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn tensor(&mut self, size: &[i64], draw: fn(&mut Rng) -> f64) -> Tensor {
        let count = size.iter().product::<i64>() as usize;
        let values: Vec<f32> = (0..count).map(|_| draw(self) as f32).collect();
        Tensor::from_slice(&values).reshape(size)
    }
    /// float32 standard normal values.
    fn randn(&mut self, size: &[i64]) -> Tensor {
        self.tensor(size, Rng::normal)
    }
    /// float32 values uniform in [0, 1).
    fn rand(&mut self, size: &[i64]) -> Tensor {
        self.tensor(size, Rng::uniform)
    }
    /// int64 values in 0..high.
    fn randint(&mut self, high: i64, count: usize) -> Tensor {
        let values: Vec<i64> = (0..count)
            .map(|_| (self.next() % high as u64) as i64)
            .collect();
        Tensor::from_slice(&values)
    }
}

/// The tch kernel's weights alone.
fn tch_confidence(logits: &Tensor, targets: &Tensor, mode: Weighting) -> Result<Tensor, UcagError> {
    kernels::confidence_with_probabilities(logits, targets, mode).map(|(_, weights)| weights)
}

/// The core's weights alone.
fn core_confidence<T: core::Real, D: ndarray::Dimension>(
    logits: ndarray::ArrayView<T, D>,
    targets: &[i64],
    mode: Weighting,
) -> Result<ndarray::Array1<T>, UcagError> {
    core::confidence_with_probabilities(logits, targets, mode).map(|(_, weights)| weights)
}

fn shape(t: &Tensor) -> Vec<usize> {
    t.size().iter().map(|&d| d as usize).collect()
}

/// The tensor's values as an f64 array (exact for every floating kind).
fn array(t: &Tensor) -> ArrayD<f64> {
    let values = Vec::<f64>::try_from(&t.to_kind(Kind::Double).contiguous().view([-1])).unwrap();
    ArrayD::from_shape_vec(IxDyn(&shape(t)), values).unwrap()
}

fn array_f32(t: &Tensor) -> ArrayD<f32> {
    array(t).mapv(|v| v as f32)
}

/// max |a - b| / max |b|: the relative error against the result's own magnitude (maps
/// cross zero, so no per-pixel relative error).
fn relative_error(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    err / scale
}

fn assert_close(a: &ArrayD<f64>, b: &ArrayD<f64>, tolerance: f64) {
    let err = relative_error(a, b);
    assert!(
        err <= tolerance,
        "relative error {err:.3e} > {tolerance:.1e}"
    );
}

/// Bit for bit: same shape and dtype, every element equal (NaN nowhere).
fn assert_identical(a: &Tensor, b: &Tensor) {
    assert_eq!(a.kind(), b.kind());
    assert_eq!(a.size(), b.size());
    assert!(a.equal(b), "tensors differ:\n{a}\n{b}");
}

fn grids() -> Vec<Grid> {
    vec![
        Grid::new((48, 64), 3, None, 2.6, None).unwrap(),
        Grid::new((57, 41), 4, None, 1.7, None).unwrap(),
        Grid::new((30, 30), 1, Some((30, 30)), 0.8, None).unwrap(),
        Grid::new((40, 56), 6, None, 2.0, None).unwrap(),
    ]
}

#[test]
fn unfold_matches_the_core() {
    let mut rng = Rng(1);
    for grid in grids() {
        let (h, w) = grid.image_size();
        let images = rng.randn(&[2, 3, h as i64, w as i64]);
        let got = kernels::unfold(&images, &grid).unwrap();
        let (sh, sw) = grid.scaled_size();
        assert_eq!(shape(&got), [2 * grid.num_patches(), 3, sh, sw]);
        assert_eq!(got.kind(), Kind::Float);
        let expected = core::unfold(array_f32(&images).view(), &grid).unwrap();
        assert_close(&array(&got), &expected.into_dyn().mapv(f64::from), 1e-5);

        let images = images.to_kind(Kind::Double);
        let got = kernels::unfold(&images, &grid).unwrap();
        assert_eq!(got.kind(), Kind::Double);
        let expected = core::unfold(array(&images).view(), &grid).unwrap();
        assert_close(&array(&got), &expected.into_dyn(), 1e-12);
    }
}

#[test]
fn unfold_of_strided_images_equals_unfold_of_contiguous_ones() {
    let mut rng = Rng(2);
    let grid = Grid::new((48, 64), 4, None, 2.6, None).unwrap();
    let base = rng.randn(&[2, 3, 64, 48]);
    let strided = base.transpose(2, 3);
    assert!(!strided.is_contiguous());
    let expected = kernels::unfold(&strided.contiguous(), &grid).unwrap();
    assert_identical(&kernels::unfold(&strided, &grid).unwrap(), &expected);
}

#[test]
fn a_crop_is_bit_identical_to_the_core() {
    // scale 1: the scaled patch is the patch, and both kernels copy the pixels.
    let mut rng = Rng(3);
    let grid = Grid::new((40, 52), 3, None, 1.0, None).unwrap();
    assert_eq!(grid.scaled_size(), grid.patch_size());
    let images = rng.randn(&[2, 2, 40, 52]);
    let got = kernels::unfold(&images, &grid).unwrap();
    let expected = core::unfold(array_f32(&images).view(), &grid).unwrap();
    assert_eq!(array_f32(&got), expected.into_dyn());
}

#[test]
fn fold_matches_the_core() {
    let mut rng = Rng(4);
    for (grid, map) in grids()
        .into_iter()
        .zip([(7, 7), (11, 9), (30, 30), (5, 13)])
    {
        for window in WINDOWS {
            let rows = 2 * grid.num_patches() as i64;
            let maps = rng.randn(&[rows, map.0, map.1]);
            let weights = rng.rand(&[rows]) + 1.0;
            let got = kernels::fold(&maps, &weights, &grid, window).unwrap();
            let (h, w) = grid.image_size();
            assert_eq!(shape(&got), [2, h, w]);
            assert_eq!(got.kind(), Kind::Float);
            let expected = core::fold(
                array_f32(&maps).view(),
                array_f32(&weights).view(),
                &grid,
                window,
            )
            .unwrap();
            assert_close(&array(&got), &expected.into_dyn().mapv(f64::from), 1e-5);
            // (B*N, 1, h', w') is the same fold
            assert_identical(
                &kernels::fold(&maps.unsqueeze(1), &weights, &grid, window).unwrap(),
                &got,
            );

            let (maps, weights) = (maps.to_kind(Kind::Double), weights.to_kind(Kind::Double));
            let got = kernels::fold(&maps, &weights, &grid, window).unwrap();
            assert_eq!(got.kind(), Kind::Double);
            let expected =
                core::fold(array(&maps).view(), array(&weights).view(), &grid, window).unwrap();
            assert_close(&array(&got), &expected.into_dyn(), 1e-12);
        }
    }
}

#[test]
fn a_fold_at_the_patch_size_is_bit_identical_to_the_core() {
    // No resampling: both add w * map in patch order p = 0..N and divide by D once.
    let mut rng = Rng(5);
    let grid = Grid::new((48, 64), 3, None, 2.6, None).unwrap();
    let (ph, pw) = grid.patch_size();
    let rows = 2 * grid.num_patches() as i64;
    for kind in [Kind::Float, Kind::Double] {
        let maps = rng.randn(&[rows, ph as i64, pw as i64]).to_kind(kind);
        let weights = rng.rand(&[rows]).to_kind(kind) + 1.0;
        let got = array(&kernels::fold(&maps, &weights, &grid, FoldWindow::Box).unwrap());
        let expected = if kind == Kind::Float {
            core::fold(
                array_f32(&maps).view(),
                array_f32(&weights).view(),
                &grid,
                FoldWindow::Box,
            )
            .unwrap()
            .mapv(f64::from)
        } else {
            core::fold(
                array(&maps).view(),
                array(&weights).view(),
                &grid,
                FoldWindow::Box,
            )
            .unwrap()
        };
        assert_eq!(got, expected.into_dyn());
    }
}

#[test]
fn half_precision_fold_is_within_half_precision_of_float32() {
    let mut rng = Rng(6);
    let grid = Grid::new((40, 56), 3, None, 2.6, None).unwrap();
    let maps = rng.rand(&[18, 7, 7]);
    let weights = rng.rand(&[18]) + 1.0;
    for kind in [Kind::Half, Kind::BFloat16] {
        let (maps, weights) = (maps.to_kind(kind), weights.to_kind(kind));
        let got = kernels::fold(&maps, &weights, &grid, FoldWindow::Box).unwrap();
        assert_eq!(got.kind(), kind);
        let expected = core::fold(
            array_f32(&maps).view(),
            array_f32(&weights).view(),
            &grid,
            FoldWindow::Box,
        )
        .unwrap();
        assert_close(&array(&got), &expected.into_dyn().mapv(f64::from), 1e-2);
    }
}

fn logits_and_targets(rows: i64, classes: i64, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng(seed);
    let logits = rng.randn(&[rows, classes]) * 4.0;
    let targets = rng.randint(classes, rows as usize);
    (logits, targets)
}

fn host(targets: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(targets).unwrap()
}

/// Largest |got - expected| / |expected| over the elements.
fn worst_relative_error(got: &ArrayD<f64>, expected: &ArrayD<f64>) -> f64 {
    got.iter()
        .zip(expected)
        .fold(0.0f64, |m, (g, e)| m.max((g - e).abs() / e.abs()))
}

#[test]
fn confidence_matches_the_core() {
    // float32 logits of spread ~25 over 1000 classes: `x - max` rounds to ~1e-6 absolute,
    // which exp turns into ~1e-6 relative error in p (1.5e-6 at worst over 300 seeds,
    // 2.4e-7 for exp(p)); float64 within a few ulp.
    for seed in 0..20 {
        let (logits, targets) = logits_and_targets(37, 1000, seed);
        for (mode, tolerance) in MODES.into_iter().zip([1e-6, 4e-6, 0.0]) {
            let got = tch_confidence(&logits, &targets, mode).unwrap();
            assert_eq!(shape(&got), [37]);
            assert_eq!(got.kind(), Kind::Float);
            let expected = core_confidence(array_f32(&logits).view(), &host(&targets), mode)
                .unwrap()
                .into_dyn()
                .mapv(f64::from);
            let err = worst_relative_error(&array(&got), &expected);
            assert!(err <= tolerance, "{mode:?}, seed {seed}: {err:.3e}");

            let logits = logits.to_kind(Kind::Double);
            let got = tch_confidence(&logits, &targets, mode).unwrap();
            assert_eq!(got.kind(), Kind::Double);
            let expected = core_confidence(array(&logits).view(), &host(&targets), mode)
                .unwrap()
                .into_dyn();
            let err = worst_relative_error(&array(&got), &expected);
            assert!(err <= 1e-13, "{mode:?}, seed {seed}, float64: {err:.3e}");
        }
    }
}

#[test]
fn confidence_takes_any_integer_target_kind() {
    let (logits, targets) = logits_and_targets(9, 100, 8);
    let expected = tch_confidence(&logits, &targets, Weighting::Exp).unwrap();
    for kind in [Kind::Int, Kind::Int16, Kind::Uint8] {
        let got = tch_confidence(&logits, &targets.to_kind(kind), Weighting::Exp).unwrap();
        assert_identical(&got, &expected);
    }
}

#[test]
fn the_probabilities_of_every_mode_equal_the_prob_weights_bit_for_bit() {
    let (logits, targets) = logits_and_targets(45, 1000, 9);
    for kind in [Kind::Float, Kind::Double, Kind::Half, Kind::BFloat16] {
        let logits = logits.to_kind(kind);
        let prob = tch_confidence(&logits, &targets, Weighting::Prob).unwrap();
        for mode in MODES {
            let (p, w) = kernels::confidence_with_probabilities(&logits, &targets, mode).unwrap();
            assert_identical(&p, &prob);
            assert_identical(&w, &tch_confidence(&logits, &targets, mode).unwrap());
            // two tensors of their own, also where the weights are the probabilities
            assert_ne!(p.data_ptr(), w.data_ptr());
        }
    }
    // and the core's
    let logits = array_f32(&logits);
    let targets = host(&targets);
    let prob = core_confidence(logits.view(), &targets, Weighting::Prob).unwrap();
    for mode in MODES {
        let (p, w) = core::confidence_with_probabilities(logits.view(), &targets, mode).unwrap();
        assert_eq!(p, prob);
        assert_eq!(w, core_confidence(logits.view(), &targets, mode).unwrap());
    }
}

fn argument(result: Result<Tensor, UcagError>) -> &'static str {
    result.expect_err("bad input must be an Err").argument()
}

fn is_type_error(result: Result<Tensor, UcagError>) -> bool {
    matches!(result, Err(UcagError::Type { .. }))
}

fn with_value(t: &Tensor, value: f64) -> Tensor {
    let t = t.copy();
    let _ = t.view([-1]).get(3).fill_(value);
    t
}

#[test]
fn unfold_errors_name_images() {
    let grid = Grid::new((32, 40), 3, None, 2.6, None).unwrap();
    let good = Tensor::ones([2, 3, 32, 40], (Kind::Float, CPU));
    let cases = [
        ("3-D", Tensor::ones([3, 32, 40], (Kind::Float, CPU))),
        ("5-D", Tensor::ones([1, 2, 3, 32, 40], (Kind::Float, CPU))),
        (
            "size mismatch",
            Tensor::ones([2, 3, 40, 32], (Kind::Float, CPU)),
        ),
        (
            "empty batch",
            Tensor::ones([0, 3, 32, 40], (Kind::Float, CPU)),
        ),
        (
            "no channels",
            Tensor::ones([2, 0, 32, 40], (Kind::Float, CPU)),
        ),
        ("NaN", with_value(&good, f64::NAN)),
        ("Inf", with_value(&good, f64::INFINITY)),
    ];
    for (label, images) in cases {
        let err = kernels::unfold(&images, &grid).expect_err(label);
        assert_eq!(err.argument(), "images", "{label}");
        assert!(matches!(err, UcagError::Value { .. }), "{label}");
    }
    let integers = Tensor::ones([2, 3, 32, 40], (Kind::Int64, CPU));
    assert!(is_type_error(kernels::unfold(&integers, &grid)));
    assert_eq!(argument(kernels::unfold(&integers, &grid)), "images");
}

#[test]
fn fold_errors_name_their_argument() {
    let grid = Grid::new((32, 40), 3, None, 2.6, None).unwrap();
    let n = grid.num_patches() as i64;
    let f = (Kind::Float, CPU);
    let maps = Tensor::ones([2 * n, 7, 7], f);
    let weights = Tensor::ones([2 * n], f);
    let cases = [
        (
            "maps 2-D",
            Tensor::ones([2 * n, 49], f),
            weights.copy(),
            "maps",
        ),
        (
            "3 channels",
            Tensor::ones([2 * n, 3, 7, 7], f),
            weights.copy(),
            "maps",
        ),
        (
            "rows not a multiple of N",
            Tensor::ones([2 * n - 1, 7, 7], f),
            Tensor::ones([2 * n - 1], f),
            "maps",
        ),
        (
            "rows mismatch",
            maps.copy(),
            Tensor::ones([2 * n + 1], f),
            "weights",
        ),
        (
            "weights 2-D",
            maps.copy(),
            Tensor::ones([2 * n, 1], f),
            "weights",
        ),
        (
            "empty maps",
            Tensor::ones([0, 7, 7], f),
            Tensor::ones([0], f),
            "maps",
        ),
        (
            "NaN maps",
            with_value(&maps, f64::NAN),
            weights.copy(),
            "maps",
        ),
        (
            "Inf weights",
            maps.copy(),
            with_value(&weights, f64::NEG_INFINITY),
            "weights",
        ),
    ];
    for (label, m, w, expected) in cases {
        assert_eq!(
            argument(kernels::fold(&m, &w, &grid, FoldWindow::Box)),
            expected,
            "{label}"
        );
    }
    let int_weights = Tensor::ones([2 * n], (Kind::Int64, CPU));
    assert!(is_type_error(kernels::fold(
        &maps,
        &int_weights,
        &grid,
        FoldWindow::Box
    )));
    assert_eq!(
        argument(kernels::fold(&maps, &int_weights, &grid, FoldWindow::Box)),
        "weights"
    );
}

#[test]
fn confidence_errors_name_their_argument() {
    let f = (Kind::Float, CPU);
    let targets = |v: &[i64]| Tensor::from_slice(v);
    let logits = Tensor::ones([2, 10], f);
    let cases = [
        ("1-D logits", Tensor::ones([10], f), targets(&[1]), "logits"),
        (
            "NaN logits",
            with_value(&logits, f64::NAN),
            targets(&[1, 2]),
            "logits",
        ),
        (
            "Inf logits",
            with_value(&logits, f64::INFINITY),
            targets(&[1, 2]),
            "logits",
        ),
        (
            "empty logits",
            Tensor::ones([0, 10], f),
            targets(&[]),
            "logits",
        ),
        (
            "too few targets",
            Tensor::ones([3, 10], f),
            targets(&[1, 2]),
            "targets",
        ),
        (
            "target out of range",
            logits.copy(),
            targets(&[1, 10]),
            "targets",
        ),
        (
            "negative target",
            logits.copy(),
            targets(&[-1, 0]),
            "targets",
        ),
        (
            "2-D targets",
            logits.copy(),
            targets(&[0, 1]).view([2, 1]),
            "targets",
        ),
    ];
    for (label, l, t, expected) in cases {
        for mode in MODES {
            let result = kernels::confidence_with_probabilities(&l, &t, mode);
            let err = result.expect_err(label);
            assert_eq!(err.argument(), expected, "{label}");
            assert!(matches!(err, UcagError::Value { .. }), "{label}");
        }
    }
    let out_of_range = tch_confidence(&logits, &targets(&[1, 10]), Weighting::Exp);
    assert_eq!(
        out_of_range.unwrap_err().to_string(),
        "targets: class 10 is out of range for 10 classes"
    );
    let float_targets = Tensor::from_slice(&[0.0f32, 1.0]);
    assert!(is_type_error(tch_confidence(
        &logits,
        &float_targets,
        Weighting::Exp
    )));
    let int_logits = Tensor::ones([2, 10], (Kind::Int64, CPU));
    let err = tch_confidence(&int_logits, &targets(&[1, 2]), Weighting::Exp).unwrap_err();
    assert_eq!(err.argument(), "logits");
    assert!(matches!(err, UcagError::Type { .. }));
}

#[test]
fn results_too_large_are_errors_naming_the_argument() {
    // 4096 patches scaled to 16384 x 16384: a 12 TiB result, beyond the machine's memory
    let grid = Grid::new((64, 64), 64, Some((1, 1)), 16384.0, None).unwrap();
    let images = Tensor::zeros([1, 3, 64, 64], (Kind::Float, CPU));
    let err = kernels::unfold(&images, &grid).unwrap_err();
    assert!(matches!(err, UcagError::Memory { .. }), "{err}");
    assert!(
        err.to_string().starts_with(
            "images: with this grid (4096 patches of 1 x 1 px scaled to 16384 x 16384) gives a \
             result of shape (4096, 3, 16384, 16384) float32 on cpu, which needs 12.0 TiB"
        ),
        "{err}"
    );
    // 2^62 pixels: the resized maps and the result cannot even be addressed
    let huge = Grid::new((1 << 31, 1 << 31), 2, None, 1e-9, None).unwrap();
    let maps = Tensor::ones([4, 1, 1], (Kind::Float, CPU));
    let err = kernels::fold(
        &maps,
        &Tensor::ones([4], (Kind::Float, CPU)),
        &huge,
        FoldWindow::Box,
    )
    .unwrap_err();
    assert!(matches!(err, UcagError::Value { .. }), "{err}");
    assert!(err.to_string().starts_with("maps: "), "{err}");
    assert!(err.to_string().contains("too large to allocate"), "{err}");
    // 2^48 pixels (1 PiB of float32): addressable, beyond the machine's memory
    let big = Grid::new((1 << 24, 1 << 24), 2, None, 1e-9, None).unwrap();
    let err = kernels::fold(
        &maps,
        &Tensor::ones([4], (Kind::Float, CPU)),
        &big,
        FoldWindow::Box,
    )
    .unwrap_err();
    assert!(matches!(err, UcagError::Memory { .. }), "{err}");
    assert!(err.to_string().starts_with("maps: "), "{err}");
}

#[test]
fn libtorch_allocation_failures_are_memory_errors() {
    let cpu = "Internal torch error: [enforce fail at alloc_cpu.cpp:127] err == 0. \
               DefaultCPUAllocator: can't allocate memory: you tried to allocate 13194139533312 \
               bytes. Error code 12 (Cannot allocate memory)";
    let cuda = "CUDA out of memory. Tried to allocate 12.00 TiB (GPU 0; 139.8 GiB total)";
    for text in [cpu, cuda] {
        let err = kernels::tch_error("images")(tch::TchError::Torch(text.to_string()));
        assert!(matches!(err, UcagError::Memory { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("images: libtorch could not allocate memory: "),
            "{err}"
        );
    }
    let err = kernels::tch_error("maps")(tch::TchError::Torch("shape mismatch".to_string()));
    assert!(matches!(err, UcagError::Value { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "maps: libtorch failed: Internal torch error: shape mismatch"
    );
}

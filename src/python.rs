//! The pyo3 binding `ucag._core`, the portable extension module: linked against no
//! libtorch, it runs the ndarray + rayon `kernels` on numpy arrays (and on zero-copy numpy
//! views of CPU tensors, made by `ucag.kernels`) with the GIL released, and exposes the
//! shape checks so that every path rejects bad input with the same message. It only
//! converts arguments: the kernels check them. Every entry point runs its body through
//! `py_guard`, so that not even a bug can raise pyo3's PanicException (a BaseException).

use crate::alloc;
use crate::error::{py_guard, UcagError};
use crate::grid::{FoldWindow, Grid};
use crate::kernels::{self, Real, Weighting};
use ndarray::{Array2, ArrayD, ArrayViewD};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// `repr(obj)`, shortened when it is long (a huge int): "100000000000...0000 (401
/// characters)".
fn short_repr(obj: &Bound<'_, PyAny>) -> String {
    let text = obj.repr().map(|r| r.to_string()).unwrap_or_default();
    let count = text.chars().count();
    if count <= 40 {
        return text;
    }
    let head: String = text.chars().take(12).collect();
    let tail: String = text.chars().skip(count - 4).collect();
    format!("{head}...{tail} ({count} characters)")
}

/// An int argument as Python gave it (anything with `__index__`), extracted without
/// failing so that the body can name the argument in every error: pyo3's own conversion
/// raises OverflowError for an int beyond i64, naming nothing.
#[derive(Debug, Clone)]
enum IntArg {
    Small(i64),
    /// An int beyond i64: its repr and whether it is negative.
    Huge(String, bool),
    /// Not an int: the type's name.
    NotInt(String),
}

impl<'py> FromPyObject<'py> for IntArg {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(match obj.extract::<i64>() {
            Ok(v) => IntArg::Small(v),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                IntArg::Huge(short_repr(obj), obj.lt(0).unwrap_or(false))
            }
            Err(_) => IntArg::NotInt(type_name(obj)),
        })
    }
}

/// A float argument as Python gave it (a float, or anything `float()` takes without a
/// string: ints, numpy scalars), extracted without failing, like `IntArg`.
#[derive(Debug, Clone)]
enum FloatArg {
    Float(f64),
    /// An int too large for a float: its repr.
    Huge(String),
    NotFloat(String),
}

impl<'py> FromPyObject<'py> for FloatArg {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(match obj.extract::<f64>() {
            Ok(v) => FloatArg::Float(v),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                FloatArg::Huge(short_repr(obj))
            }
            Err(_) => FloatArg::NotFloat(type_name(obj)),
        })
    }
}

/// A size argument: an int, or a sequence of two ints (h, w), as positive (h, w); errors
/// name the argument. Sides beyond i64 are refused here (every limit of the grid is far
/// below them).
fn size_arg(argument: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<(usize, usize)> {
    let not_a_size = || {
        UcagError::type_error(
            argument,
            format!(
                "must be an int or an (h, w) pair of ints, got {}",
                type_name(obj)
            ),
        )
    };
    let (h, w) = match IntArg::extract_bound(obj)? {
        IntArg::NotInt(_) => {
            // any sequence (a str is not one here); numpy arrays and lists included
            let items = obj
                .extract::<Vec<Bound<'_, PyAny>>>()
                .map_err(|_| not_a_size())?;
            match items.as_slice() {
                [h, w] => (IntArg::extract_bound(h)?, IntArg::extract_bound(w)?),
                _ => {
                    return Err(UcagError::value(
                        argument,
                        format!(
                            "must be an int or an (h, w) pair, got {} values",
                            items.len()
                        ),
                    )
                    .into())
                }
            }
        }
        side => (side.clone(), side),
    };
    let text = |v: &IntArg| match v {
        IntArg::Small(v) => v.to_string(),
        IntArg::Huge(repr, _) => repr.clone(),
        IntArg::NotInt(name) => format!("a {name}"),
    };
    let sides = [&h, &w];
    if sides.iter().any(|v| matches!(v, IntArg::NotInt(_))) {
        return Err(not_a_size().into());
    }
    if let (IntArg::Small(h), IntArg::Small(w)) = (&h, &w) {
        if *h >= 1 && *w >= 1 {
            return Ok((*h as usize, *w as usize));
        }
    }
    // not both positive i64: some side is not positive, or beyond i64
    let positive = |v: &&IntArg| {
        matches!(v, IntArg::Small(n) if *n >= 1) || matches!(v, IntArg::Huge(_, false))
    };
    let problem = if sides.iter().all(positive) {
        format!("each side must be at most {}", i64::MAX)
    } else {
        "must be positive".to_string()
    };
    Err(UcagError::value(
        argument,
        format!("{problem}, got ({}, {})", text(&h), text(&w)),
    )
    .into())
}

/// A float32 or float64 numpy array (any dimensionality and strides), borrowed read-only.
#[derive(FromPyObject)]
enum FloatArray<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// Runs `$body` with `$array` bound to the typed array of a `FloatArray`, whichever its
/// dtype (the body is compiled once per element type).
macro_rules! with_float_array {
    ($value:expr, $array:ident => $body:expr) => {
        match $value {
            FloatArray::F32($array) => $body,
            FloatArray::F64($array) => $body,
        }
    };
}

impl<'py> FloatArray<'py> {
    /// The array passed as `argument`. A numpy array of another dtype is a TypeError naming
    /// the dtype; anything else is the TypeError `not_an_array` makes.
    fn from_arg(
        argument: &'static str,
        obj: &Bound<'py, PyAny>,
        not_an_array: impl FnOnce() -> PyErr,
    ) -> PyResult<Self> {
        obj.extract()
            .map_err(|_| match obj.downcast::<PyUntypedArray>() {
                Ok(array) => UcagError::type_error(
                    argument,
                    format!(
                        "must be a float32 or float64 array, got dtype {}",
                        array.dtype()
                    ),
                )
                .into(),
                Err(_) => not_an_array(),
            })
    }
}

/// Class indices as Python gives them: one int, or a sequence of ints (a list, a tuple, an
/// integer numpy array).
#[derive(FromPyObject)]
enum Targets {
    One(i64),
    Many(Vec<i64>),
}

impl Targets {
    fn from_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
        match obj.extract::<Targets>() {
            Ok(Targets::One(t)) => Ok(vec![t]),
            Ok(Targets::Many(ts)) => Ok(ts),
            Err(_) => Err(UcagError::type_error(
                "targets",
                format!(
                    "must be a sequence of int class indices, got {}",
                    type_name(obj)
                ),
            )
            .into()),
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn not_an_array<'a>(
    argument: &'static str,
    obj: &'a Bound<'_, PyAny>,
) -> impl FnOnce() -> PyErr + 'a {
    move || {
        UcagError::type_error(
            argument,
            format!(
                "must be a torch.Tensor or a numpy.ndarray, got {}",
                type_name(obj)
            ),
        )
        .into()
    }
}

fn mixed_kinds(argument: &'static str, expected: &str, reference: &str) -> PyErr {
    UcagError::type_error(
        argument,
        format!("must be a {expected} because {reference} is one"),
    )
    .into()
}

/// Geometry of the spatial unfoldment (docs/algorithm.md section 1).
///
/// A `units` x `units` grid of overlapping patches over an image of `image_size` pixels,
/// each resized to `scaled_size`.
///
/// Args:
///     image_size: (H, W) of the images, an int (square) or an (h, w) pair; H * W at most
///         2**63 - 1 pixels.
///     units: Patches per axis, 1 <= `units` <= min(1024, H, W) (an axis of S pixels has at
///         most S distinct patch positions); `units=1` needs a patch equal to the image.
///     patch_size: (h, w) of a patch, an int or a pair, within the image; None for
///         round_half_up(124/224 * side).
///     scale: The upsampling factor: `scaled_size` defaults to round_half_up(scale * patch).
///     scaled_size: The size every patch is resized to (an int or an (h, w) pair) instead of
///         `scale`. Scaled sides are at most 32768 px (so `scale` < 32768.5 / max(h, w)).
///
/// Raises:
///     TypeError: An argument has the wrong type.
///     ValueError: Invalid geometry; the message starts with the argument's name and says
///         the limit.
///
/// Examples:
///     >>> import ucag
///     >>> grid = ucag.Grid(224)  # the paper's grid: 6 x 6 patches of 124/224 of the side
///     >>> grid.patch_size, grid.scaled_size, grid.num_patches
///     ((124, 124), (322, 322), 36)
///     >>> grid.offsets_y
///     (0, 20, 40, 60, 80, 100)
///     >>> ucag.Grid((8, 8), units=2, patch_size=6, scale=2.0).coverage().tolist()[0]
///     [1, 1, 2, 2, 2, 2, 1, 1]
#[pyclass(name = "Grid", module = "ucag", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyGrid(Grid);

/// (image_size, units, patch_size, scale, scaled_size), as `Grid.__new__` takes them.
type GridArgs = ((usize, usize), usize, (usize, usize), f64, (usize, usize));

/// `units` as a positive usize, or an error naming it.
fn units_arg(units: IntArg) -> PyResult<usize> {
    match units {
        IntArg::Small(n) if n >= 1 => Ok(n as usize),
        IntArg::Small(n) => {
            Err(UcagError::value("units", format!("must be at least 1, got {n}")).into())
        }
        IntArg::Huge(repr, true) => {
            Err(UcagError::value("units", format!("must be at least 1, got {repr}")).into())
        }
        IntArg::Huge(repr, false) => Err(UcagError::value(
            "units",
            format!(
                "must be at most {} ({0}^2 patches per image), got {repr}",
                crate::grid::MAX_UNITS
            ),
        )
        .into()),
        IntArg::NotInt(name) => {
            Err(UcagError::type_error("units", format!("must be an int, got {name}")).into())
        }
    }
}

/// `scale` as an f64 (the grid checks its range), or an error naming it.
fn scale_arg(scale: FloatArg) -> PyResult<f64> {
    match scale {
        FloatArg::Float(v) => Ok(v),
        FloatArg::Huge(repr) => Err(UcagError::value(
            "scale",
            format!("must be a finite number > 0, got {repr}: beyond the float range"),
        )
        .into()),
        FloatArg::NotFloat(name) => {
            Err(UcagError::type_error("scale", format!("must be a number, got {name}")).into())
        }
    }
}

#[pymethods]
impl PyGrid {
    #[new]
    #[pyo3(
        signature = (image_size, units = IntArg::Small(6), patch_size = None, scale = FloatArg::Float(2.6), scaled_size = None),
        text_signature = "(image_size, units=6, patch_size=None, scale=2.6, scaled_size=None)"
    )]
    fn new(
        image_size: &Bound<'_, PyAny>,
        units: IntArg,
        patch_size: Option<&Bound<'_, PyAny>>,
        scale: FloatArg,
        scaled_size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        py_guard(|| {
            let image = size_arg("image_size", image_size)?;
            let units = units_arg(units)?;
            let patch = patch_size.map(|p| size_arg("patch_size", p)).transpose()?;
            let scale = scale_arg(scale)?;
            let scaled = scaled_size
                .map(|s| size_arg("scaled_size", s))
                .transpose()?;
            Ok(PyGrid(Grid::new(image, units, patch, scale, scaled)?))
        })
    }

    /// (H, W) of the images this grid unfolds.
    #[getter]
    fn image_size(&self) -> PyResult<(usize, usize)> {
        py_guard(|| Ok(self.0.image_size()))
    }
    /// Patches per axis (n); the grid has n * n patches.
    #[getter]
    fn units(&self) -> PyResult<usize> {
        py_guard(|| Ok(self.0.units()))
    }
    /// (h, w) of a patch in image pixels.
    #[getter]
    fn patch_size(&self) -> PyResult<(usize, usize)> {
        py_guard(|| Ok(self.0.patch_size()))
    }
    /// (S_h, S_w) every patch is resized to before attribution.
    #[getter]
    fn scaled_size(&self) -> PyResult<(usize, usize)> {
        py_guard(|| Ok(self.0.scaled_size()))
    }
    /// Row offset of each patch row, top to bottom.
    #[getter]
    fn offsets_y<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        py_guard(|| PyTuple::new(py, self.0.offsets_y()))
    }
    /// Column offset of each patch column, left to right.
    #[getter]
    fn offsets_x<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        py_guard(|| PyTuple::new(py, self.0.offsets_x()))
    }
    /// N = units * units.
    #[getter]
    fn num_patches(&self) -> PyResult<usize> {
        py_guard(|| Ok(self.0.num_patches()))
    }
    /// The duplication matrix D: how many patches contain each pixel.
    ///
    /// Returns:
    ///     D as an int32 numpy array (H, W).
    ///
    /// Raises:
    ///     MemoryError: D cannot be allocated; the message names `image_size`.
    ///     ValueError: D would take more than 2**63 - 1 bytes.
    fn coverage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i32>>> {
        py_guard(|| {
            let coverage = py.allow_threads(|| self.0.coverage())?;
            Ok(coverage.into_pyarray(py))
        })
    }
    /// The fold's window (docs/algorithm.md section 4.1) as float64 arrays.
    ///
    /// Patch (i, j) weighs its pixel (r, c) by rows[i, r] * columns[j, c]; the fold divides
    /// pixel (y, x) by row_sums[y] * column_sums[x]. "box" (the paper's fold) gives ones and
    /// the coverage counts.
    ///
    /// Args:
    ///     window: "box", "linear" or "cosine".
    ///
    /// Returns:
    ///     The row profiles (units, h) and column profiles (units, w) of the patch
    ///         positions, and the sums of the placed profiles (H,) and (W,), as the tuple
    ///         `(rows, columns, row_sums, column_sums)`.
    ///
    /// Raises:
    ///     ValueError: `window` is not "box", "linear" or "cosine".
    #[pyo3(signature = (window = "box"))]
    #[allow(clippy::type_complexity)]
    fn fold_weights<'py>(
        &self,
        py: Python<'py>,
        window: &str,
    ) -> PyResult<(
        Bound<'py, PyArray2<f64>>,
        Bound<'py, PyArray2<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
    )> {
        py_guard(|| {
            let window: FoldWindow = window.parse()?;
            let what = || "for this grid".to_string();
            let weights = self
                .0
                .fold_weights(window)
                .map_err(|e| e.named("window", what()))?;
            let (ph, pw) = self.0.patch_size();
            let units = self.0.units();
            let matrix = |profiles: &[Vec<f64>], side: usize| -> Result<Array2<f64>, UcagError> {
                // units * side <= H * W: fits usize
                let data = alloc::try_collect(units * side, profiles.iter().flatten().copied())
                    .map_err(|e| e.named("window", what()))?;
                Array2::from_shape_vec((units, side), data)
                    .map_err(|e| UcagError::value("window", e.to_string()))
            };
            let rows = matrix(&weights.rows, ph)?;
            let columns = matrix(&weights.columns, pw)?;
            Ok((
                rows.into_pyarray(py),
                columns.into_pyarray(py),
                weights.row_sums.into_pyarray(py),
                weights.column_sums.into_pyarray(py),
            ))
        })
    }
    /// Pickles as the explicit patch and scaled sizes, which rebuild the same grid.
    fn __getnewargs__(&self) -> PyResult<GridArgs> {
        py_guard(|| {
            Ok((
                self.0.image_size(),
                self.0.units(),
                self.0.patch_size(),
                1.0,
                self.0.scaled_size(),
            ))
        })
    }
    fn __repr__(&self) -> PyResult<String> {
        py_guard(|| {
            let g = &self.0;
            Ok(format!(
                "Grid(image_size={:?}, units={}, patch_size={:?}, scaled_size={:?}, num_patches={})",
                g.image_size(),
                g.units(),
                g.patch_size(),
                g.scaled_size(),
                g.num_patches()
            ))
        })
    }
}

/// Patches of every image, bicubically resized to the grid's scaled size (docs/algorithm.md
/// section 1).
///
/// images: (B, C, H, W) numpy float32/float64 array, any strides. Returns a (B*N, C, S_h,
/// S_w) array of the same dtype; row b*N + p is patch p (row-major) of image b.
#[pyfunction]
fn unfold(
    py: Python<'_>,
    images: &Bound<'_, PyAny>,
    grid: &Bound<'_, PyGrid>,
) -> PyResult<PyObject> {
    py_guard(|| {
        let grid = &grid.get().0;
        let images = FloatArray::from_arg("images", images, not_an_array("images", images))?;
        with_float_array!(images, images => {
            let view = images.as_array();
            let out = py.allow_threads(|| kernels::unfold(view, grid))?;
            Ok(out.into_pyarray(py).into_any().unbind())
        })
    })
}

/// Per-patch weights from logits (docs/algorithm.md section 3): the softmax probability p
/// of each row's target class, mapped by `mode`: "exp" -> exp(p) (the paper), "prob" -> p,
/// "uniform" -> 1.
///
/// logits: (rows, K) numpy float array; targets: one class per row (a sequence of ints).
/// Returns (rows,) weights in the logits' dtype, or (probabilities, weights) from the same
/// softmax when `return_probabilities` is true.
#[pyfunction]
#[pyo3(signature = (logits, targets, mode = "exp", *, return_probabilities = false))]
fn confidence(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    targets: &Bound<'_, PyAny>,
    mode: &str,
    return_probabilities: bool,
) -> PyResult<PyObject> {
    py_guard(|| {
        let mode: Weighting = mode.parse()?;
        let logits = FloatArray::from_arg("logits", logits, not_an_array("logits", logits))?;
        let targets = Targets::from_arg(targets)?;
        with_float_array!(logits, logits => {
            let view = logits.as_array();
            let (probabilities, weights) = py.allow_threads(|| {
                kernels::confidence_with_probabilities(view, &targets, mode)
            })?;
            let weights = weights.into_pyarray(py);
            if return_probabilities {
                let pair = (probabilities.into_pyarray(py), weights).into_pyobject(py)?;
                Ok(pair.into_any().unbind())
            } else {
                Ok(weights.into_any().unbind())
            }
        })
    })
}

/// Conquer (docs/algorithm.md section 4): resize each partial map bilinearly to the patch
/// size, weight it, add it at its patch's place and divide by the coverage D ("box", the
/// paper's fold) or, with a tapered `window` ("linear", "cosine"), weight each patch's
/// pixels by its window and divide by the sum of the windows (section 4.1).
///
/// maps: (B*N, h', w') or (B*N, 1, h', w') numpy array at any resolution; weights: (B*N,)
/// numpy array. Returns the raw (signed, unnormalised) UCAG maps (B, H, W) in the maps'
/// dtype.
#[pyfunction]
#[pyo3(signature = (maps, weights, grid, window = "box"))]
fn fold(
    py: Python<'_>,
    maps: &Bound<'_, PyAny>,
    weights: &Bound<'_, PyAny>,
    grid: &Bound<'_, PyGrid>,
    window: &str,
) -> PyResult<PyObject> {
    py_guard(|| {
        let window: FoldWindow = window.parse()?;
        let grid = &grid.get().0;
        let maps = FloatArray::from_arg("maps", maps, not_an_array("maps", maps))?;
        let weights = FloatArray::from_arg("weights", weights, || {
            mixed_kinds("weights", "numpy.ndarray", "maps")
        })?;
        with_float_array!(maps, maps => fold_numpy(py, maps.as_array(), weights, grid, window))
    })
}

fn fold_numpy<T: Real + Element>(
    py: Python<'_>,
    maps: ArrayViewD<'_, T>,
    weights: FloatArray<'_>,
    grid: &Grid,
    window: FoldWindow,
) -> PyResult<PyObject> {
    // Weights in the maps' dtype (the kernel accumulates in it), in their own shape (the
    // kernel checks it), allocated fallibly.
    let weights = with_float_array!(weights, weights => {
        let view = weights.as_array();
        let converted = view.iter().map(|&v| T::from(v).unwrap_or_else(T::nan));
        let data = alloc::try_collect(view.len(), converted)
            .map_err(|e| e.named("weights", format!("of shape {:?} needs a copy", view.shape())))?;
        ArrayD::from_shape_vec(view.raw_dim(), data)
            .map_err(|e| UcagError::value("weights", e.to_string()))?
    });
    let out = py.allow_threads(|| kernels::fold(maps, weights.view(), grid, window))?;
    Ok(out.into_pyarray(py).into_any().unbind())
}

/// The shape checks of `unfold` for a (B, C, H, W) batch shape; returns B.
#[pyfunction]
fn check_images(shape: Vec<usize>, grid: &Bound<'_, PyGrid>) -> PyResult<usize> {
    py_guard(|| Ok(kernels::check_images(&shape, &grid.get().0)?))
}

/// The shape checks of `fold`; returns (B, h', w').
#[pyfunction]
fn check_fold_inputs(
    maps_shape: Vec<usize>,
    weights_shape: Vec<usize>,
    grid: &Bound<'_, PyGrid>,
) -> PyResult<(usize, usize, usize)> {
    py_guard(|| {
        Ok(kernels::check_fold_inputs(
            &maps_shape,
            &weights_shape,
            &grid.get().0,
        )?)
    })
}

/// The checks of `confidence` on the logits' shape, the targets and the mode; returns the
/// targets as a list of ints.
#[pyfunction]
fn confidence_targets(
    logits_shape: Vec<usize>,
    targets: &Bound<'_, PyAny>,
    mode: &str,
) -> PyResult<Vec<i64>> {
    py_guard(|| {
        mode.parse::<Weighting>()?;
        let host = Targets::from_arg(targets)?;
        kernels::check_confidence_inputs(&logits_shape, &host)?;
        Ok(host)
    })
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py_guard(|| {
        m.add_class::<PyGrid>()?;
        m.add_function(wrap_pyfunction!(unfold, m)?)?;
        m.add_function(wrap_pyfunction!(fold, m)?)?;
        m.add_function(wrap_pyfunction!(confidence, m)?)?;
        m.add_function(wrap_pyfunction!(check_images, m)?)?;
        m.add_function(wrap_pyfunction!(check_fold_inputs, m)?)?;
        m.add_function(wrap_pyfunction!(confidence_targets, m)?)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    })
}

//! The pyo3 binding `ucag._core`, the portable extension module: linked against no
//! libtorch, it runs the ndarray + rayon `kernels` on numpy arrays (and on zero-copy numpy
//! views of CPU tensors, made by `ucag.kernels`) with the GIL released, and exposes the
//! shape checks so that every path rejects bad input with the same message. It only
//! converts arguments: the kernels check them.

use crate::error::UcagError;
use crate::grid::Grid;
use crate::kernels::{self, Real, Weighting};
use ndarray::ArrayViewD;
use numpy::{
    Element, IntoPyArray, PyArray2, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// A size argument as Python gives it: an int, an (h, w) tuple, or another sequence of
/// ints (which must hold two).
#[derive(FromPyObject)]
enum Size {
    Side(i64),
    Pair(i64, i64),
    Values(Vec<i64>),
}

impl Size {
    /// The size passed as `argument`, as positive (h, w); errors name the argument.
    fn from_arg(argument: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<(usize, usize)> {
        let (h, w) = match obj.extract::<Size>() {
            Ok(Size::Side(v)) => (v, v),
            Ok(Size::Pair(h, w)) => (h, w),
            Ok(Size::Values(v)) => match *v.as_slice() {
                [h, w] => (h, w),
                _ => {
                    return Err(UcagError::value(
                        argument,
                        format!("must be an int or an (h, w) pair, got {} values", v.len()),
                    )
                    .into())
                }
            },
            Err(_) => {
                return Err(UcagError::type_error(
                    argument,
                    format!(
                        "must be an int or an (h, w) pair of ints, got {}",
                        obj.get_type().name()?
                    ),
                )
                .into())
            }
        };
        match (usize::try_from(h), usize::try_from(w)) {
            (Ok(h), Ok(w)) if h >= 1 && w >= 1 => Ok((h, w)),
            _ => {
                Err(UcagError::value(argument, format!("must be positive, got ({h}, {w})")).into())
            }
        }
    }
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

/// Geometry of the spatial unfoldment (docs/algorithm.md section 1): a `units` x `units`
/// grid of overlapping patches over an image of `image_size` pixels, each resized to
/// `scaled_size`.
///
/// `image_size` and `patch_size` take an int or an (h, w) pair. `patch_size` defaults to
/// round_half_up(124/224 * side); `scaled_size` defaults to round_half_up(scale * patch).
/// Invalid geometry raises ValueError naming the argument.
#[pyclass(name = "Grid", module = "ucag", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyGrid(Grid);

/// (image_size, units, patch_size, scale, scaled_size), as `Grid.__new__` takes them.
type GridArgs = ((usize, usize), usize, (usize, usize), f64, (usize, usize));

#[pymethods]
impl PyGrid {
    #[new]
    #[pyo3(signature = (image_size, units = 6, patch_size = None, scale = 2.6, scaled_size = None))]
    fn new(
        image_size: &Bound<'_, PyAny>,
        units: i64,
        patch_size: Option<&Bound<'_, PyAny>>,
        scale: f64,
        scaled_size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let image = Size::from_arg("image_size", image_size)?;
        let units = match usize::try_from(units) {
            Ok(n) if n >= 1 => n,
            _ => {
                let message = format!("must be at least 1, got {units}");
                return Err(UcagError::value("units", message).into());
            }
        };
        let patch = patch_size
            .map(|p| Size::from_arg("patch_size", p))
            .transpose()?;
        let scaled = scaled_size
            .map(|s| Size::from_arg("scaled_size", s))
            .transpose()?;
        Ok(PyGrid(Grid::new(image, units, patch, scale, scaled)?))
    }

    /// (H, W) of the images this grid unfolds.
    #[getter]
    fn image_size(&self) -> (usize, usize) {
        self.0.image_size()
    }
    /// Patches per axis (n); the grid has n * n patches.
    #[getter]
    fn units(&self) -> usize {
        self.0.units()
    }
    /// (h, w) of a patch in image pixels.
    #[getter]
    fn patch_size(&self) -> (usize, usize) {
        self.0.patch_size()
    }
    /// (S_h, S_w) every patch is resized to before attribution.
    #[getter]
    fn scaled_size(&self) -> (usize, usize) {
        self.0.scaled_size()
    }
    /// Row offset of each patch row, top to bottom.
    #[getter]
    fn offsets_y<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.0.offsets_y())
    }
    /// Column offset of each patch column, left to right.
    #[getter]
    fn offsets_x<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.0.offsets_x())
    }
    /// N = units * units.
    #[getter]
    fn num_patches(&self) -> usize {
        self.0.num_patches()
    }
    /// The duplication matrix D: how many patches contain each pixel, int32 (H, W).
    fn coverage<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i32>> {
        self.0.coverage().into_pyarray(py)
    }
    /// Pickles as the explicit patch and scaled sizes, which rebuild the same grid.
    fn __getnewargs__(&self) -> GridArgs {
        (
            self.0.image_size(),
            self.0.units(),
            self.0.patch_size(),
            1.0,
            self.0.scaled_size(),
        )
    }
    fn __repr__(&self) -> String {
        let g = &self.0;
        format!(
            "Grid(image_size={:?}, units={}, patch_size={:?}, scaled_size={:?}, num_patches={})",
            g.image_size(),
            g.units(),
            g.patch_size(),
            g.scaled_size(),
            g.num_patches()
        )
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
    let grid = &grid.get().0;
    let images = FloatArray::from_arg("images", images, not_an_array("images", images))?;
    with_float_array!(images, images => {
        let view = images.as_array();
        let out = py.allow_threads(|| kernels::unfold(view, grid))?;
        Ok(out.into_pyarray(py).into_any().unbind())
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
}

/// Conquer (docs/algorithm.md section 4): resize each partial map bilinearly to the patch
/// size, weight it, add it at its patch's place and divide by the coverage D.
///
/// maps: (B*N, h', w') or (B*N, 1, h', w') numpy array at any resolution; weights: (B*N,)
/// numpy array. Returns the raw (signed, unnormalised) UCAG maps (B, H, W) in the maps'
/// dtype.
#[pyfunction]
fn fold(
    py: Python<'_>,
    maps: &Bound<'_, PyAny>,
    weights: &Bound<'_, PyAny>,
    grid: &Bound<'_, PyGrid>,
) -> PyResult<PyObject> {
    let grid = &grid.get().0;
    let maps = FloatArray::from_arg("maps", maps, not_an_array("maps", maps))?;
    let weights = FloatArray::from_arg("weights", weights, || {
        mixed_kinds("weights", "numpy.ndarray", "maps")
    })?;
    with_float_array!(maps, maps => fold_numpy(py, maps.as_array(), weights, grid))
}

fn fold_numpy<T: Real + Element>(
    py: Python<'_>,
    maps: ArrayViewD<'_, T>,
    weights: FloatArray<'_>,
    grid: &Grid,
) -> PyResult<PyObject> {
    // Weights in the maps' dtype (the kernel accumulates in it).
    let weights = with_float_array!(weights, weights => {
        weights.as_array().mapv(|v| T::from(v).unwrap_or_else(T::nan))
    });
    let out = py.allow_threads(|| kernels::fold(maps, weights.view(), grid))?;
    Ok(out.into_pyarray(py).into_any().unbind())
}

/// The shape checks of `unfold` for a (B, C, H, W) batch shape; returns B.
#[pyfunction]
fn check_images(shape: Vec<usize>, grid: &Bound<'_, PyGrid>) -> PyResult<usize> {
    Ok(kernels::check_images(&shape, &grid.get().0)?)
}

/// The shape checks of `fold`; returns (B, h', w').
#[pyfunction]
fn check_fold_inputs(
    maps_shape: Vec<usize>,
    weights_shape: Vec<usize>,
    grid: &Bound<'_, PyGrid>,
) -> PyResult<(usize, usize, usize)> {
    Ok(kernels::check_fold_inputs(
        &maps_shape,
        &weights_shape,
        &grid.get().0,
    )?)
}

/// The checks of `confidence` on the logits' shape, the targets and the mode; returns the
/// targets as a list of ints.
#[pyfunction]
fn confidence_targets(
    logits_shape: Vec<usize>,
    targets: &Bound<'_, PyAny>,
    mode: &str,
) -> PyResult<Vec<i64>> {
    mode.parse::<Weighting>()?;
    let host = Targets::from_arg(targets)?;
    kernels::check_confidence_inputs(&logits_shape, &host)?;
    Ok(host)
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGrid>()?;
    m.add_function(wrap_pyfunction!(unfold, m)?)?;
    m.add_function(wrap_pyfunction!(fold, m)?)?;
    m.add_function(wrap_pyfunction!(confidence, m)?)?;
    m.add_function(wrap_pyfunction!(check_images, m)?)?;
    m.add_function(wrap_pyfunction!(check_fold_inputs, m)?)?;
    m.add_function(wrap_pyfunction!(confidence_targets, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

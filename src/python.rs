//! The pyo3 binding `ucag._core`, the portable extension module: linked against no
//! libtorch, it runs the ndarray + rayon `kernels` on numpy arrays (and on zero-copy numpy
//! views of CPU tensors, made by `ucag.kernels`) with the GIL released, and exposes the
//! shape checks so that every path rejects bad input with the same message. It only
//! converts arguments.

use crate::error::UcagError;
use crate::grid::Grid;
use crate::kernels::{self, Real, Weighting};
use ndarray::{Axis, Ix2, Ix3, Ix4};
use numpy::{
    dtype, Element, IntoPyArray, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods,
    PyUntypedArray, PyUntypedArrayMethods, ToPyArray,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// A size argument: an int, or an (h, w) pair of ints.
fn parse_size(argument: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<(usize, usize)> {
    let pair: (i64, i64) = if let Ok(v) = obj.extract::<i64>() {
        (v, v)
    } else if let Ok((h, w)) = obj.extract::<(i64, i64)>() {
        (h, w)
    } else if let Ok(v) = obj.extract::<Vec<i64>>() {
        match v.as_slice() {
            [h, w] => (*h, *w),
            _ => {
                return Err(UcagError::value(
                    argument,
                    format!("must be an int or an (h, w) pair, got {} values", v.len()),
                )
                .into())
            }
        }
    } else {
        return Err(UcagError::type_error(
            argument,
            format!(
                "must be an int or an (h, w) pair of ints, got {}",
                obj.get_type().name()?
            ),
        )
        .into());
    };
    if pair.0 < 1 || pair.1 < 1 {
        return Err(UcagError::value(
            argument,
            format!("must be positive, got ({}, {})", pair.0, pair.1),
        )
        .into());
    }
    Ok((pair.0 as usize, pair.1 as usize))
}

/// Geometry of the spatial unfoldment: a `units` x `units` grid of overlapping patches over
/// an image of `image_size` pixels, each resized to `scaled_size` (SPEC section 1).
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
        let image = parse_size("image_size", image_size)?;
        if units < 1 {
            return Err(
                UcagError::value("units", format!("must be at least 1, got {units}")).into(),
            );
        }
        let patch = patch_size
            .map(|p| parse_size("patch_size", p))
            .transpose()?;
        let scaled = scaled_size
            .map(|s| parse_size("scaled_size", s))
            .transpose()?;
        Ok(PyGrid(Grid::new(
            image,
            units as usize,
            patch,
            scale,
            scaled,
        )?))
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

/// Float dtype of a numpy array, as the Rust element type to run the kernel with.
enum NumpyFloat {
    F32,
    F64,
}

fn numpy_float(argument: &'static str, array: &Bound<'_, PyUntypedArray>) -> PyResult<NumpyFloat> {
    let py = array.py();
    let dt = array.dtype();
    if dt.is_equiv_to(&dtype::<f32>(py)) {
        Ok(NumpyFloat::F32)
    } else if dt.is_equiv_to(&dtype::<f64>(py)) {
        Ok(NumpyFloat::F64)
    } else {
        Err(UcagError::type_error(
            argument,
            format!("must be a float32 or float64 array, got dtype {dt}"),
        )
        .into())
    }
}

fn not_an_array(argument: &'static str, obj: &Bound<'_, PyAny>) -> PyErr {
    let name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    UcagError::type_error(
        argument,
        format!("must be a torch.Tensor or a numpy.ndarray, got {name}"),
    )
    .into()
}

fn mixed_kinds(argument: &'static str, expected: &str, reference: &str) -> PyErr {
    UcagError::type_error(
        argument,
        format!("must be a {expected} because {reference} is one"),
    )
    .into()
}

/// Patches of every image, bicubically resized to the grid's scaled size (SPEC section 1).
///
/// images: (B, C, H, W) numpy float32/float64 array, any strides. Returns a (B*N, C, S_h,
/// S_w) array of the same dtype; row b*N + p is patch p (row-major) of image b.
#[pyfunction]
fn unfold(
    py: Python<'_>,
    images: &Bound<'_, PyAny>,
    grid: &Bound<'_, PyGrid>,
) -> PyResult<PyObject> {
    let grid = grid.get().0.clone();
    let array = images
        .downcast::<PyUntypedArray>()
        .map_err(|_| not_an_array("images", images))?;
    kernels::check_images(array.shape(), &grid)?;
    match numpy_float("images", array)? {
        NumpyFloat::F32 => unfold_numpy::<f32>(py, array, &grid),
        NumpyFloat::F64 => unfold_numpy::<f64>(py, array, &grid),
    }
}

fn unfold_numpy<T: Real + Element>(
    py: Python<'_>,
    array: &Bound<'_, PyUntypedArray>,
    grid: &Grid,
) -> PyResult<PyObject> {
    let array = array.downcast::<PyArrayDyn<T>>()?.readonly();
    let view = array
        .as_array()
        .into_dimensionality::<Ix4>()
        .map_err(|e| PyValueError::new_err(format!("images: {e}")))?;
    let out = py.allow_threads(|| kernels::unfold(view, grid))?;
    Ok(out.into_pyarray(py).into_any().unbind())
}

/// Per-patch weights from logits (SPEC section 3): the softmax probability p of each row's
/// target class, mapped by `mode`: "exp" -> exp(p) (the paper), "prob" -> p, "uniform" -> 1.
///
/// logits: (rows, K) numpy float array; targets: one class per row (a sequence of ints).
/// Returns (rows,) weights in the logits' dtype.
#[pyfunction]
#[pyo3(signature = (logits, targets, mode = "exp"))]
fn confidence(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    targets: &Bound<'_, PyAny>,
    mode: &str,
) -> PyResult<PyObject> {
    let mode: Weighting = mode.parse()?;
    let array = logits
        .downcast::<PyUntypedArray>()
        .map_err(|_| not_an_array("logits", logits))?;
    let host = extract_targets(targets)?;
    kernels::check_confidence_inputs(array.shape(), &host)?;
    match numpy_float("logits", array)? {
        NumpyFloat::F32 => confidence_numpy::<f32>(py, array, &host, mode),
        NumpyFloat::F64 => confidence_numpy::<f64>(py, array, &host, mode),
    }
}

fn extract_targets(targets: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    if let Ok(t) = targets.extract::<i64>() {
        return Ok(vec![t]);
    }
    targets.extract::<Vec<i64>>().map_err(|_| {
        let name = targets
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        UcagError::type_error(
            "targets",
            format!("must be a sequence of int class indices, got {name}"),
        )
        .into()
    })
}

fn confidence_numpy<T: Real + Element>(
    py: Python<'_>,
    array: &Bound<'_, PyUntypedArray>,
    targets: &[i64],
    mode: Weighting,
) -> PyResult<PyObject> {
    let array = array.downcast::<PyArrayDyn<T>>()?.readonly();
    let view = array
        .as_array()
        .into_dimensionality::<Ix2>()
        .map_err(|e| PyValueError::new_err(format!("logits: {e}")))?;
    let out = py.allow_threads(|| kernels::confidence(view, targets, mode))?;
    Ok(out.into_pyarray(py).into_any().unbind())
}

/// Conquer (SPEC section 4): resize each partial map bilinearly to the patch size, weight
/// it, add it at its patch's place and divide by the coverage D.
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
    let grid = grid.get().0.clone();
    let maps_array = maps
        .downcast::<PyUntypedArray>()
        .map_err(|_| not_an_array("maps", maps))?;
    let weights_array = weights
        .downcast::<PyUntypedArray>()
        .map_err(|_| mixed_kinds("weights", "numpy.ndarray", "maps"))?;
    kernels::check_fold_inputs(maps_array.shape(), weights_array.shape(), &grid)?;
    match numpy_float("maps", maps_array)? {
        NumpyFloat::F32 => fold_numpy::<f32>(py, maps_array, weights_array, &grid),
        NumpyFloat::F64 => fold_numpy::<f64>(py, maps_array, weights_array, &grid),
    }
}

fn fold_numpy<T: Real + Element>(
    py: Python<'_>,
    maps: &Bound<'_, PyUntypedArray>,
    weights: &Bound<'_, PyUntypedArray>,
    grid: &Grid,
) -> PyResult<PyObject> {
    let maps = maps.downcast::<PyArrayDyn<T>>()?.readonly();
    let view = maps.as_array();
    let view = if view.ndim() == 4 {
        view.index_axis_move(Axis(1), 0)
    } else {
        view
    };
    let view = view
        .into_dimensionality::<Ix3>()
        .map_err(|e| PyValueError::new_err(format!("maps: {e}")))?;
    // Weights in the maps' dtype (the kernel accumulates in it).
    let weights = match numpy_float("weights", weights)? {
        NumpyFloat::F32 => weights
            .downcast::<PyArrayDyn<f32>>()?
            .readonly()
            .as_array()
            .mapv(|v| T::from(v).unwrap_or_else(T::nan)),
        NumpyFloat::F64 => weights
            .downcast::<PyArrayDyn<f64>>()?
            .readonly()
            .as_array()
            .mapv(|v| T::from(v).unwrap_or_else(T::nan)),
    };
    let weights = weights
        .into_dimensionality::<ndarray::Ix1>()
        .map_err(|e| PyValueError::new_err(format!("weights: {e}")))?;
    let out = py.allow_threads(|| kernels::fold(view, weights.view(), grid))?;
    Ok(out.to_pyarray(py).into_any().unbind())
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
    let host = extract_targets(targets)?;
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

//! The pyo3 binding `ucag._core`. It only converts arguments, dispatches torch tensors to
//! `torch_kernels` and numpy arrays to `kernels`, and releases the GIL while they run.

use crate::error::UcagError;
use crate::grid::Grid;
use crate::kernels::{self, Real, Weighting};
use crate::torch_kernels;
use ndarray::{Axis, Ix2, Ix3, Ix4};
use numpy::{
    dtype, Element, IntoPyArray, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods,
    PyUntypedArray, PyUntypedArrayMethods, ToPyArray,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3_tch::PyTensor;
use tch::{Kind, Tensor};

impl From<UcagError> for PyErr {
    fn from(err: UcagError) -> PyErr {
        match err {
            UcagError::Value { .. } => PyValueError::new_err(err.to_string()),
            UcagError::Type { .. } => PyTypeError::new_err(err.to_string()),
        }
    }
}

/// The torch tensor inside `obj`, or None when `obj` is not a `torch.Tensor`. Tensors on
/// devices tch cannot name (meta, xpu, ...) are rejected here, before any kernel sees them.
fn as_tensor(argument: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<Option<Tensor>> {
    // SAFETY: `obj` is a live Python object for the duration of the call.
    let tensor = unsafe { Tensor::pyobject_unpack(obj.as_ptr() as *mut tch::python::CPyObject) }
        .map_err(pyo3_tch::wrap_tch_err)?;
    if tensor.is_some() {
        let device: String = obj.getattr("device")?.getattr("type")?.extract()?;
        if device != "cpu" && device != "cuda" {
            return Err(UcagError::value(
                argument,
                format!("is on a '{device}' device; ucag runs on cpu and cuda tensors"),
            )
            .into());
        }
    }
    Ok(tensor)
}

fn tensor_to_py(py: Python<'_>, t: Tensor) -> PyResult<PyObject> {
    Ok(PyTensor(t).into_pyobject(py)?.unbind())
}

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
/// images: torch (B, C, H, W) floating tensor (any device, any strides) or numpy float32/
/// float64 array. Returns (B*N, C, S_h, S_w) of the same kind, dtype and device; row
/// b*N + p is patch p (row-major) of image b.
#[pyfunction]
fn unfold(
    py: Python<'_>,
    images: &Bound<'_, PyAny>,
    grid: &Bound<'_, PyGrid>,
) -> PyResult<PyObject> {
    let grid = grid.get().0.clone();
    if let Some(t) = as_tensor("images", images)? {
        let out = py.allow_threads(move || torch_kernels::unfold(&t, &grid))?;
        return tensor_to_py(py, out);
    }
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
/// logits: (rows, K) torch tensor or numpy float array; targets: one class per row (a
/// sequence of ints, or an integer tensor on the logits' device). Returns (rows,) weights.
#[pyfunction]
#[pyo3(signature = (logits, targets, mode = "exp"))]
fn confidence(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    targets: &Bound<'_, PyAny>,
    mode: &str,
) -> PyResult<PyObject> {
    let mode: Weighting = mode.parse()?;
    if let Some(l) = as_tensor("logits", logits)? {
        let targets = match as_tensor("targets", targets)? {
            Some(t) => {
                let kind = t.f_kind().ok();
                if !matches!(
                    kind,
                    Some(Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8)
                ) {
                    return Err(UcagError::type_error(
                        "targets",
                        format!("must hold integer class indices, got {kind:?}"),
                    )
                    .into());
                }
                t
            }
            None => {
                let host = extract_targets(targets)?;
                Tensor::f_from_slice(&host)
                    .and_then(|t| t.f_to(l.device()))
                    .map_err(pyo3_tch::wrap_tch_err)?
            }
        };
        let out = py.allow_threads(move || torch_kernels::confidence(&l, &targets, mode))?;
        return tensor_to_py(py, out);
    }
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
/// maps: (B*N, h', w') or (B*N, 1, h', w') at any resolution; weights: (B*N,). Both torch
/// tensors on one device, or both numpy arrays. Returns the raw (signed, unnormalised)
/// UCAG maps (B, H, W) in the maps' kind, dtype and device.
#[pyfunction]
fn fold(
    py: Python<'_>,
    maps: &Bound<'_, PyAny>,
    weights: &Bound<'_, PyAny>,
    grid: &Bound<'_, PyGrid>,
) -> PyResult<PyObject> {
    let grid = grid.get().0.clone();
    if let Some(m) = as_tensor("maps", maps)? {
        let w = as_tensor("weights", weights)?
            .ok_or_else(|| mixed_kinds("weights", "torch.Tensor", "maps"))?;
        let out = py.allow_threads(move || torch_kernels::fold(&m, &w, &grid))?;
        return tensor_to_py(py, out);
    }
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

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGrid>()?;
    m.add_function(wrap_pyfunction!(unfold, m)?)?;
    m.add_function(wrap_pyfunction!(fold, m)?)?;
    m.add_function(wrap_pyfunction!(confidence, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

//! The pyo3 binding `ucag._tch`. It only converts arguments and releases the GIL; the
//! kernels check them, and which tensors come here is decided in Python. Every entry
//! point runs its body through `ucag::py_guard`: a panic (in tch, which panics on some
//! libtorch errors, or a bug here) is a RuntimeError, never pyo3's PanicException.

use crate::kernels;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use tch::Tensor;
use ucag::{py_guard, FoldWindow, Grid, UcagError, Weighting};

/// The torch tensor passed as `argument`; a TypeError naming it otherwise.
fn tensor(argument: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    // SAFETY: `obj` is a live Python object for the duration of the call.
    unsafe { Tensor::pyobject_unpack(obj.as_ptr() as *mut tch::python::CPyObject) }
        .map_err(pyo3_tch::wrap_tch_err)?
        .ok_or_else(|| {
            let name = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            UcagError::type_error(argument, format!("must be a torch.Tensor, got {name}")).into()
        })
}

fn to_py(py: Python<'_>, t: Tensor) -> PyResult<PyObject> {
    Ok(PyTensor(t).into_pyobject(py)?.unbind())
}

/// (image_size, units, patch_size, scale, scaled_size): `ucag.Grid.__getnewargs__()`, the
/// explicit form that rebuilds the same grid (the Grid class lives in `ucag._core`).
type GridArgs = ((usize, usize), usize, (usize, usize), f64, (usize, usize));

fn grid((image, units, patch, scale, scaled): GridArgs) -> Result<Grid, UcagError> {
    Grid::new(image, units, Some(patch), scale, Some(scaled))
}

/// Bicubic unfold of a (B, C, H, W) floating tensor into (B*N, C, S_h, S_w) patches
/// (docs/algorithm.md section 1).
#[pyfunction]
fn unfold(py: Python<'_>, images: &Bound<'_, PyAny>, geometry: GridArgs) -> PyResult<PyObject> {
    py_guard(|| {
        let images = tensor("images", images)?;
        let grid = grid(geometry)?;
        let out = py.allow_threads(move || kernels::unfold(&images, &grid))?;
        to_py(py, out)
    })
}

/// Per-row confidence weights (docs/algorithm.md section 3) from (rows, K) logits and an
/// integer tensor of targets on the logits' device (`ucag.kernels` turns a sequence into
/// one); (probabilities, weights) from the same softmax when `return_probabilities` is true.
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
        let logits = tensor("logits", logits)?;
        let targets = tensor("targets", targets)?;
        let (probabilities, weights) = py.allow_threads(move || {
            kernels::confidence_with_probabilities(&logits, &targets, mode)
        })?;
        if return_probabilities {
            let pair = (PyTensor(probabilities), PyTensor(weights)).into_pyobject(py)?;
            Ok(pair.into_any().unbind())
        } else {
            to_py(py, weights)
        }
    })
}

/// Fold (B*N, [1,] h', w') partial maps with (B*N,) weights into raw (B, H, W) UCAG maps
/// (docs/algorithm.md section 4), with the fold `window` "box" (the paper's), "linear" or
/// "cosine" (section 4.1).
#[pyfunction]
#[pyo3(signature = (maps, weights, geometry, window = "box"))]
fn fold(
    py: Python<'_>,
    maps: &Bound<'_, PyAny>,
    weights: &Bound<'_, PyAny>,
    geometry: GridArgs,
    window: &str,
) -> PyResult<PyObject> {
    py_guard(|| {
        let window: FoldWindow = window.parse()?;
        let maps = tensor("maps", maps)?;
        let weights = tensor("weights", weights)?;
        let grid = grid(geometry)?;
        let out = py.allow_threads(move || kernels::fold(&maps, &weights, &grid, window))?;
        to_py(py, out)
    })
}

#[pymodule]
#[pyo3(name = "_tch")]
fn tch_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py_guard(|| {
        m.add_function(wrap_pyfunction!(unfold, m)?)?;
        m.add_function(wrap_pyfunction!(fold, m)?)?;
        m.add_function(wrap_pyfunction!(confidence, m)?)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    })
}

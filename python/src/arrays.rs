//! NumPy arrays in and out. Inputs are read where they lie (float32, float16, or
//! ml_dtypes' bfloat16, C-contiguous): never copied by the module, so that the only copy of
//! X is its upload to the GPU. Outputs are allocated once at their final size and filled
//! chunk by chunk as the projection streams, in the storage type where NumPy has it.

use crate::errors::py_err;
use numpy::{
    PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyReadwriteArray1,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qkv_wgpu::host::{available_memory, check_room};
use qkv_wgpu::projector::ChunkOutput;
use qkv_wgpu::{ElementType, Elements, Error};

/// An input array in a float type the GPU reads, borrowed from NumPy.
pub enum Input<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F16(PyReadonlyArrayDyn<'py, half::f16>),
    /// ml_dtypes' bfloat16, seen as its bit patterns.
    Bf16(PyReadonlyArrayDyn<'py, u16>),
}

/// What an input must be, for the messages.
const INPUT_TYPES: &str = "float32, float16 or bfloat16 (ml_dtypes)";

impl<'py> Input<'py> {
    /// `obj` (an ndarray, or anything `numpy.asarray` views) as an input named `what`. A
    /// float64 or integer array is refused, not converted: the message says how to convert
    /// it (a copy the caller makes knowingly).
    pub fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        let py = obj.py();
        let arr = if obj.is_instance_of::<numpy::PyUntypedArray>() {
            obj.clone()
        } else {
            py.import("numpy")?.call_method1("asarray", (obj,))?
        };
        let dtype: String = arr.getattr("dtype")?.getattr("name")?.extract()?;
        let native = |e: PyErr| {
            PyValueError::new_err(format!(
                "{what} is a {dtype} array NumPy cannot lend as native {dtype} (byte order?): \
                 {e}"
            ))
        };
        match dtype.as_str() {
            "float32" => Ok(Input::F32(
                arr.downcast::<PyArrayDyn<f32>>()
                    .map_err(|e| native(e.into()))?
                    .try_readonly()
                    .map_err(|e| native(e.into()))?,
            )),
            "float16" => Ok(Input::F16(
                arr.downcast::<PyArrayDyn<half::f16>>()
                    .map_err(|e| native(e.into()))?
                    .try_readonly()
                    .map_err(|e| native(e.into()))?,
            )),
            "bfloat16" => {
                let bits = arr.call_method1("view", ("uint16",))?;
                Ok(Input::Bf16(
                    bits.downcast::<PyArrayDyn<u16>>()
                        .map_err(|e| native(e.into()))?
                        .try_readonly()
                        .map_err(|e| native(e.into()))?,
                ))
            }
            other => Err(PyValueError::new_err(format!(
                "{what} has dtype {other}; give {INPUT_TYPES}. `{what}.astype(np.float32)` \
                 converts it (a copy: the projector never copies an input itself)"
            ))),
        }
    }

    /// The array's dimensions.
    pub fn shape(&self) -> &[usize] {
        match self {
            Input::F32(a) => a.shape(),
            Input::F16(a) => a.shape(),
            Input::Bf16(a) => a.shape(),
        }
    }

    /// The elements, row-major: an error unless the array is C-contiguous (a strided view,
    /// a transpose, is refused rather than copied).
    pub fn elements(&self, what: &str) -> PyResult<Elements<'_>> {
        let refused = |_: ()| {
            PyValueError::new_err(format!(
                "{what} is not C-contiguous (a transposed or strided view): \
                 `np.ascontiguousarray({what})` copies it into one (the projector never copies \
                 an input itself)"
            ))
        };
        // as_slice takes a Fortran-ordered array too (read row-major it would be another
        // matrix): C order is checked first.
        let c_order = match self {
            Input::F32(a) => a.is_c_contiguous(),
            Input::F16(a) => a.is_c_contiguous(),
            Input::Bf16(a) => a.is_c_contiguous(),
        };
        if !c_order {
            return Err(refused(()));
        }
        Ok(match self {
            Input::F32(a) => Elements::F32(a.as_slice().map_err(|_| refused(()))?),
            Input::F16(a) => Elements::Half(
                ElementType::F16,
                bytemuck::cast_slice(a.as_slice().map_err(|_| refused(()))?),
            ),
            Input::Bf16(a) => {
                Elements::Half(ElementType::Bf16, a.as_slice().map_err(|_| refused(()))?)
            }
        })
    }

    /// A 2-D or 1-D input widened exactly to f32 (weights and biases, which are fused into
    /// one copy anyway), with its shape.
    pub fn to_f32(&self, what: &str) -> PyResult<(Vec<f32>, Vec<usize>)> {
        Ok((self.elements(what)?.to_f32(), self.shape().to_vec()))
    }
}

/// What Q, K and V come back as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    /// float32 (f32 storage, or a half type widened exactly where asked).
    F32,
    /// float16, as stored.
    F16,
    /// ml_dtypes.bfloat16, as stored.
    Bf16,
}

impl OutType {
    /// The type Q, K, V of `element` storage come back in: its own where NumPy has it
    /// (bfloat16 through ml_dtypes, where it is installed), else float32, widened exactly;
    /// float32 where `widen`.
    pub fn of(py: Python<'_>, element: ElementType, widen: bool) -> Self {
        match element {
            _ if widen => OutType::F32,
            ElementType::F16 => OutType::F16,
            ElementType::Bf16 if py.import("ml_dtypes").is_ok() => OutType::Bf16,
            _ => OutType::F32,
        }
    }

    fn size(self) -> u64 {
        if self == OutType::F32 {
            4
        } else {
            2
        }
    }
}

/// One output's buffer, borrowed for writing while the GPU streams into it.
enum Buf<'py> {
    F32(Bound<'py, PyArray1<f32>>),
    Bits(Bound<'py, PyArray1<u16>>),
}

/// Q, K, V allocated at their final sizes (flat), to be filled and then shaped.
pub struct Outputs<'py> {
    bufs: Vec<Buf<'py>>,
    out: OutType,
}

impl<'py> Outputs<'py> {
    /// Buffers of `lens` elements of `out`; a `MemoryError` saying what they need and what
    /// to do where they would not fit in the memory the system has left (a run is never
    /// started to be killed half way).
    pub fn new(py: Python<'py>, lens: [usize; 3], out: OutType, tokens: usize) -> PyResult<Self> {
        let need: u64 = lens
            .iter()
            .map(|&l| (l as u64).saturating_mul(out.size()))
            .fold(0, u64::saturating_add);
        let as_type = match out {
            OutType::F32 => "float32",
            OutType::F16 => "float16",
            OutType::Bf16 => "bfloat16",
        };
        let parts = [(
            &*format!("Q, K and V of {tokens} tokens as {as_type}"),
            need,
        )];
        let way_out = "project X in parts (X[i:j]), keep the outputs in a half type \
                       (dtype=\"f16\" or \"bf16\"), or stream them to files with `qkv project`, \
                       which holds only a chunk at a time";
        check_room(&parts, available_memory(), way_out).map_err(py_err)?;
        let bufs = lens
            .iter()
            .map(|&l| match out {
                OutType::F32 => Buf::F32(PyArray1::zeros(py, l, false)),
                _ => Buf::Bits(PyArray1::zeros(py, l, false)),
            })
            .collect();
        Ok(Self { bufs, out })
    }

    /// The buffers as slices to write, for as long as `self` is borrowed.
    pub fn writers(&self) -> PyResult<Writers<'py>> {
        let mut parts = Vec::new();
        for b in &self.bufs {
            parts.push(match b {
                Buf::F32(a) => Writer::F32(a.try_readwrite().map_err(PyErr::from)?),
                Buf::Bits(a) => Writer::Bits(a.try_readwrite().map_err(PyErr::from)?),
            });
        }
        Ok(Writers(parts))
    }

    /// The filled buffers as NumPy arrays of `dims`, in their type (views: no copy).
    pub fn finish(
        self,
        py: Python<'py>,
        dims: [Vec<usize>; 3],
    ) -> PyResult<[Bound<'py, PyAny>; 3]> {
        let np = py.import("numpy")?;
        let view_as = match self.out {
            OutType::F32 => None,
            OutType::F16 => Some(np.getattr("float16")?),
            OutType::Bf16 => Some(py.import("ml_dtypes")?.getattr("bfloat16")?),
        };
        let mut out = Vec::new();
        for (b, d) in self.bufs.into_iter().zip(dims) {
            let flat = match b {
                Buf::F32(a) => a.into_any(),
                Buf::Bits(a) => a.into_any(),
            };
            let typed = match &view_as {
                Some(t) => flat.call_method1("view", (t,))?,
                None => flat,
            };
            out.push(typed.call_method1("reshape", (d,))?);
        }
        Ok(out.try_into().map_err(|_| ()).expect("three outputs"))
    }
}

enum Writer<'py> {
    F32(PyReadwriteArray1<'py, f32>),
    Bits(PyReadwriteArray1<'py, u16>),
}

/// Q, K, V's buffers borrowed for writing.
pub struct Writers<'py>(Vec<Writer<'py>>);

/// Q, K, V's memory as slices a sink on another thread writes into.
pub enum Slice<'a> {
    F32(&'a mut [f32]),
    Bits(&'a mut [u16]),
}

impl<'py> Writers<'py> {
    pub fn slices(&mut self) -> PyResult<[Slice<'_>; 3]> {
        let mut out = Vec::new();
        for w in &mut self.0 {
            out.push(match w {
                Writer::F32(a) => Slice::F32(a.as_slice_mut().map_err(PyErr::from)?),
                Writer::Bits(a) => Slice::Bits(a.as_slice_mut().map_err(PyErr::from)?),
            });
        }
        Ok(out.try_into().map_err(|_| ()).expect("three outputs"))
    }
}

/// Copies one chunk's Q, K, V into the outputs: a chunk holds whole sequences, so in either
/// layout its outputs are one contiguous range starting at its first token. Half types are
/// copied as they are, or widened exactly into float32.
pub fn take_chunk(
    out: &mut [Slice<'_>; 3],
    widths: [usize; 3],
    c: ChunkOutput<'_>,
) -> Result<(), Error> {
    let r = c.rows.start as usize;
    for ((dst, width), part) in out.iter_mut().zip(widths).zip([c.q, c.k, c.v]) {
        let at = r * width;
        match (dst, part) {
            (Slice::F32(d), Elements::F32(p)) => d[at..at + p.len()].copy_from_slice(p),
            (Slice::F32(d), Elements::Half(e, p)) => {
                e.decode(bytemuck::cast_slice(p), &mut d[at..at + p.len()])
            }
            (Slice::Bits(d), Elements::Half(_, p)) => d[at..at + p.len()].copy_from_slice(p),
            (Slice::Bits(_), Elements::F32(_)) => {
                return Err(Error::Input(
                    "f32 results cannot be stored as 16-bit patterns".into(),
                ))
            }
        }
    }
    Ok(())
}

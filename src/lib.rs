//! qkv-wgpu: the Q, K and V projections of self-attention (Q = X·Wq + bq, K = X·Wk + bk,
//! V = X·Wv + bv) as one fused GEMM over [Wq | Wk | Wv] in one WGSL compute dispatch, on any
//! GPU wgpu drives, validated against an f64 CPU reference.
//!
//! ```no_run
//! use qkv_wgpu::{AdapterFilter, GpuContext, Kernel, Projector, QkvShape};
//! # fn main() -> qkv_wgpu::Result<()> {
//! let ctx = GpuContext::new(&AdapterFilter::default())?;         // once
//! let shape = QkvShape::new(1024, 768, 768, 768, true)?;
//! let (x, weights) = qkv_wgpu::random_inputs(&shape, 42);
//! let mut projector = Projector::new(&ctx, shape, Kernel::DEFAULT)?; // once per shape
//! projector.set_weights(&weights)?;
//! let out = projector.run(&x)?;                                   // many times
//! let reference = qkv_wgpu::reference(&shape, &x, &weights);
//! let tol = qkv_wgpu::Tolerance::for_f32_accumulation(768);
//! let report = qkv_wgpu::QkvReport::new((&out.q, &out.k, &out.v), &reference, 768, 768, tol);
//! assert!(report.pass());
//! # Ok(()) }
//! ```

pub mod adapter;
#[cfg(feature = "native")]
pub mod bench;
pub mod binding;
pub mod conformance;
pub mod context;
#[cfg(feature = "native")]
pub mod cpu;
pub mod element;
pub mod epilogue;
pub mod error;
pub mod explain;
pub mod host;
#[cfg(feature = "native")]
pub mod io;
pub mod kernels;
pub mod layout;
pub mod measure;
pub mod peak;
pub mod plan;
pub mod presets;
pub mod projector;
pub mod quant;
pub mod records;
pub mod reference;
pub mod shape;
pub mod tune;
pub mod validate;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub use adapter::{list_adapters, pick_adapters};
pub use adapter::{AdapterFilter, AdapterSummary, BackendChoice};
pub use context::{ContextOptions, GpuContext};
pub use element::{ElementType, OperandTypes};
pub use error::{Error, Result};
pub use host::{ElementVec, Elements, ElementsMut};
pub use kernels::{Kernel, KernelConfig, KernelSpec};
pub use layout::{HeadSplit, OutputLayout};
pub use plan::{ChunkOptions, ChunkPlan, DEFAULT_BUFFER_SETS, MAX_BUFFER_SETS, MIN_BUFFER_SETS};
pub use projector::{
    spread, ChunkOutput, GuardDamage, KernelTimer, KernelTimes, Projector, QkvOutput, RunTimings,
};
pub use reference::{reference, Reference};
pub use shape::QkvShape;
pub use validate::{absmax, validate, QkvReport, Report, Tolerance, ToleranceOverrides};
pub use weights::{
    random_inputs, random_weights, random_x_rows, random_x_rows_in, FusedWeights, Projection,
};

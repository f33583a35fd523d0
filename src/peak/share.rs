//! A kernel's figure against the measured peak and roofline ([`Share`], marked impossible
//! past 100%), and whether a new peak is to be trusted beside an earlier one ([`fell`]).

use super::Peak;
use crate::kernels::KernelSpec;
use crate::shape::QkvShape;
use serde::Serialize;

/// A kernel's figure against a measured peak: what `run` and `bench` report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    /// The peak of the kernel's arithmetic, GFLOP/s.
    pub peak_gflops: f64,
    /// What that peak is: "f32 FMA" or a cooperative-matrix configuration.
    pub peak_of: String,
    /// The kernel's GFLOP/s over `peak_gflops`.
    pub peak_share: f64,
    /// The roofline on this shape, GFLOP/s ([`Peak::roofline_for`]).
    pub roofline_gflops: f64,
    /// Whether the roofline is the memory bound (else the compute peak).
    pub memory_bound: bool,
    /// The kernel's GFLOP/s over `roofline_gflops`.
    pub roofline_share: f64,
    /// Either share past 100%: no kernel runs faster than the measured peak or the
    /// roofline, so the timing or the cached peak is wrong, and the figure is not shown as
    /// one (text: "impossible").
    pub impossible: bool,
}

impl Peak {
    /// `gflops` of `spec` on `shape` against this peak; None where its arithmetic was not
    /// measured.
    pub fn share(&self, spec: &KernelSpec, shape: &QkvShape, gflops: f64) -> Option<Share> {
        let compute = self.compute_for(spec)?;
        let roofline = self.roofline_for(spec, shape)?;
        Some(Share {
            impossible: gflops > compute.gflops || gflops > roofline,
            peak_share: gflops / compute.gflops,
            memory_bound: roofline < compute.gflops,
            peak_gflops: compute.gflops,
            peak_of: compute.what,
            roofline_gflops: roofline,
            roofline_share: gflops / roofline,
        })
    }
}

impl std::fmt::Display for Share {
    /// `61.0% of the f32 FMA peak (23.5 GFLOP/s); 80.2% of the roofline here (17.9 GFLOP/s,
    /// memory-bound)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.impossible {
            return write!(
                f,
                "impossible: {:.2}x the {} peak ({:.1} GFLOP/s) and {:.2}x the roofline here \
                 ({:.1} GFLOP/s): no kernel runs past them, so the timing or the cached peak \
                 is wrong (a peak measured under load? `qkv peak` measures again)",
                self.peak_share,
                self.peak_of,
                self.peak_gflops,
                self.roofline_share,
                self.roofline_gflops
            );
        }
        write!(
            f,
            "{:.1}% of the {} peak ({:.1} GFLOP/s); {:.1}% of the roofline here ({:.1} \
             GFLOP/s, {})",
            100.0 * self.peak_share,
            self.peak_of,
            self.peak_gflops,
            100.0 * self.roofline_share,
            self.roofline_gflops,
            if self.memory_bound {
                "memory-bound"
            } else {
                "compute-bound"
            }
        )
    }
}

/// The fraction of an earlier peak below which a new measurement of the same adapter and
/// driver is called suspect ([`fell`]).
pub const FELL_BELOW: f64 = 0.5;

/// Why `new` is not to be trusted beside `earlier` (the same adapter and driver), if it is
/// not: a rate below [`FELL_BELOW`] of the earlier one. A peak is the fastest of its
/// samples, and other work on the machine only slows samples down, so a peak far below an
/// earlier one was most likely measured under load; every later share would then read high.
pub fn fell(earlier: &Peak, new: &Peak) -> Option<String> {
    let pairs = [
        (
            "f32 FMA",
            earlier.f32_fma_gflops,
            new.f32_fma_gflops,
            "GFLOP/s",
        ),
        ("copy", earlier.copy_gbs, new.copy_gbs, "GB/s"),
    ];
    let fell: Vec<String> = pairs
        .iter()
        .filter(|(_, e, n, _)| *n < FELL_BELOW * e)
        .map(|(what, e, n, unit)| format!("{what} {n:.1} {unit}, was {e:.1}"))
        .collect();
    (!fell.is_empty()).then(|| {
        format!(
            "this peak is far below the one measured before on this adapter and driver ({}): \
             measured under load? every share is read against it; measure again on a quiet \
             machine (`qkv peak --refresh`)",
            fell.join(", ")
        )
    })
}

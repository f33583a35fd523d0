//! `qkv peak`: what this adapter does through WGSL, measured (the f32 FMA rate, each
//! cooperative-matrix configuration's multiply-add rate, device memory bandwidth), cached per
//! adapter and driver so that `run` and `bench` can show each kernel's share of it.

use crate::args::GpuArgs;
use crate::exit::Failure;
use crate::stdout::outln;
use crate::text::progress;
use clap::Args;
use qkv_wgpu::peak::{self, Peak};
use qkv_wgpu::Error;

#[derive(Args, Debug)]
pub struct PeakArgs {
    /// Measure again even where a peak of this adapter and driver is cached
    #[arg(long)]
    pub refresh: bool,
    /// Print the peak as a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn peak(gpu: &GpuArgs, args: &PeakArgs) -> Result<(), Failure> {
    let ctx = gpu.context()?;
    let (earlier, notes) = peak::cached(&ctx.summary, None);
    for n in &notes {
        eprintln!("note: {n}");
    }
    let cached = if args.refresh { None } else { earlier.clone() };
    let (peak, how) = match cached {
        Some(p) => (p, "cached (qkv peak --refresh measures again)".to_string()),
        None => {
            progress(&format!(
                "measuring {} ({}): about {}",
                ctx.summary.name,
                ctx.summary.backend,
                if ctx.is_cpu() {
                    "half a minute on a CPU driver"
                } else {
                    "five seconds"
                }
            ));
            let p = peak::measure(&ctx, &mut |what| progress(&format!("peak: {what}")))?;
            if let Some(why) = earlier.as_ref().and_then(|e| peak::fell(e, &p)) {
                eprintln!("warning: {why}");
            }
            let how = match peak::store(&p, None) {
                Ok(notes) => {
                    for n in notes {
                        eprintln!("note: {n}");
                    }
                    "measured now, cached for run and bench".to_string()
                }
                Err(e) => {
                    eprintln!("note: {e}");
                    "measured now (not cached)".to_string()
                }
            };
            (p, how)
        }
    };
    if args.json {
        let mut value = serde_json::to_value(&peak).map_err(|e| Error::Input(e.to_string()))?;
        value["source"] = how.into();
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).expect("serializes")
        );
    } else {
        print(&peak, &how);
    }
    Ok(())
}

fn print(p: &Peak, how: &str) {
    outln!(
        "adapter   {} ({}), driver {}",
        p.adapter,
        p.backend,
        p.driver
    );
    let timer = match p.timer {
        qkv_wgpu::KernelTimer::GpuTimestamp => "GPU timestamps",
        qkv_wgpu::KernelTimer::Host => "host clock (no timestamp queries)",
    };
    outln!("peak      {how}; timed by {timer}");
    outln!(
        "  f32 FMA                 {:>10.1} GFLOP/s   every kernel but coopmat multiplies and \
         adds in f32",
        p.f32_fma_gflops
    );
    if p.coop.is_empty() {
        outln!("  cooperative matrices    none offered");
    }
    for c in &p.coop {
        outln!(
            "  {:<22}  {:>10.1} GFLOP/s   coopmat(tile={},acc={})",
            c.name(),
            c.gflops,
            c.tile,
            if c.f32_accumulator { 32 } else { 16 }
        );
    }
    outln!(
        "  memory (copy)           {:>10.1} GB/s      bytes read + written per second",
        p.copy_gbs
    );
    outln!(
        "measured by kernels built to reach each limit (registers only, independent chains; a \
         16-byte coalesced copy), the fastest of {} samples",
        peak::SAMPLES
    );
}

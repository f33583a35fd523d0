//! `qkv adapters`: every adapter wgpu sees, with the limits and features this tool depends on.

use crate::args::GpuArgs;
use crate::exit::Failure;
use crate::stdout::outln;
use clap::Args;
use qkv_wgpu::list_adapters;

#[derive(Args, Debug)]
pub struct AdaptersArgs {
    /// Print a JSON array instead of text
    #[arg(long)]
    pub json: bool,
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn adapters(gpu: &GpuArgs, args: &AdaptersArgs) -> Result<(), Failure> {
    let filter = gpu.filter();
    let list = list_adapters(&filter);
    if list.is_empty() {
        return Err(qkv_wgpu::adapter::no_adapter(&filter).into());
    }
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).expect("adapter summaries serialize")
        );
        return Ok(());
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    for (i, a) in list.iter().enumerate() {
        outln!("[{i}] {} ({}, {})", a.name, a.backend, a.device_type);
        outln!("    driver:                      {}", a.driver);
        if !a.pci_bus_id.is_empty() {
            outln!("    PCI address:                 {}", a.pci_bus_id);
        }
        outln!(
            "    max storage binding / buffer: {} / {}",
            mib(a.max_storage_buffer_binding_size),
            mib(a.max_buffer_size)
        );
        outln!(
            "    workgroup storage:            {} bytes; {} invocations per workgroup; {} \
             workgroups per dimension",
            a.max_compute_workgroup_storage_size,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroups_per_dimension
        );
        outln!(
            "    timestamps: {}   subgroups: {} (size {}..{})",
            yes(a.timestamp_query),
            yes(a.subgroup),
            a.subgroup_size.0,
            a.subgroup_size.1
        );
        // Both half types run on every adapter: stored packed two to a 32-bit word and
        // widened to f32 by core WGSL built-ins, so SHADER_F16 is not needed for them.
        outln!(
            "    f16: {}; bf16: emulated (the high half of an f32); both stored packed in \
             32-bit words and accumulated in f32",
            if a.shader_f16 {
                "native (SHADER_F16)"
            } else {
                "emulated (no SHADER_F16; unpack2x16float / pack2x16float)"
            }
        );
        let coop: Vec<String> = a.cooperative_matrix.iter().map(|c| c.to_string()).collect();
        outln!(
            "    cooperative matrices (kernel coopmat): {}",
            if coop.is_empty() {
                "none".to_string()
            } else {
                coop.join(", ")
            }
        );
    }
    Ok(())
}

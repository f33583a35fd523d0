//! `qkv adapters`: every adapter wgpu sees, with the limits and features this tool depends on.

use crate::args::GpuArgs;
use crate::exit::Failure;
use crate::out::outln;
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
            "    timestamps: {}   f16: {}   subgroups: {} (size {}..{})",
            yes(a.timestamp_query),
            yes(a.shader_f16),
            yes(a.subgroup),
            a.subgroup_size.0,
            a.subgroup_size.1
        );
    }
    Ok(())
}

//! Every module the crate compiles (a kernel's body composed with its parts, or a whole file)
//! parses and validates with naga, with no adapter needed, and every file under `shaders/`
//! and `shaders/parts/` is one the crate actually composes (no orphans, no missing files).

use qkv_wgpu::kernels::ALL_SHADERS;
use std::path::Path;

/// Validates with no optional capability, except subgroup operations for a shader that
/// uses them, and f16 and cooperative matrices for one that enables them (the host runs
/// those only on adapters with the SUBGROUP, SHADER_F16 and EXPERIMENTAL_COOPERATIVE_MATRIX
/// features).
fn validate(name: &str, source: &str) {
    validated(name, source);
}

/// [`validate`], returning the module and what validation learnt of it.
fn validated(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(source)));
    let subgroups = source.contains("@builtin(subgroup_");
    let mut caps = naga::valid::Capabilities::empty();
    for (on, cap) in [
        (subgroups, naga::valid::Capabilities::SUBGROUP),
        (
            source.contains("enable f16;"),
            naga::valid::Capabilities::SHADER_FLOAT16,
        ),
        (
            source.contains("enable wgpu_cooperative_matrix;"),
            naga::valid::Capabilities::COOPERATIVE_MATRIX,
        ),
        (
            source.contains("unpack2x16float"),
            naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
        ),
    ] {
        if on {
            caps |= cap;
        }
    }
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    if subgroups {
        validator
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all());
    }
    let info = validator
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate:\n{}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_composed_shader_parses_and_validates() {
    assert!(ALL_SHADERS.len() > 20, "{} shaders", ALL_SHADERS.len());
    for s in ALL_SHADERS.iter() {
        validate(s.file, s.wgsl);
    }
}

/// The `.wgsl` files of `shaders/<sub>`, by name, with their text.
fn files(sub: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("shaders")
        .join(sub);
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no .wgsl files in {}", dir.display());
    found
}

/// The parts and the body `wgsl` is composed of (as `shader!` composes: each part followed by
/// a newline, then the body), read back from the files on disk.
fn composition<'a>(
    wgsl: &str,
    bodies: &'a [(String, String)],
    parts: &'a [(String, String)],
) -> Option<(&'a str, Vec<&'a str>)> {
    let mut rest = wgsl;
    let mut used = Vec::new();
    loop {
        if let Some((body, _)) = bodies.iter().find(|(_, text)| rest == text) {
            return Some((body.as_str(), used));
        }
        let (name, text) = parts
            .iter()
            .find(|(_, text)| rest.starts_with(&format!("{text}\n")))?;
        used.push(name.as_str());
        rest = &rest[text.len() + 1..];
    }
}

#[test]
fn every_shader_is_a_body_and_parts_on_disk_and_every_file_is_used() {
    let bodies = files("");
    let parts = files("parts");
    let mut used: std::collections::BTreeSet<&str> = Default::default();
    for s in ALL_SHADERS.iter() {
        let (body, with) = composition(s.wgsl, &bodies, &parts).unwrap_or_else(|| {
            panic!(
                "{} is not a file of shaders/ and parts of shaders/parts/",
                s.file
            )
        });
        used.insert(body);
        used.extend(with.iter().copied());
        // A module of several sources is labelled by its body and what tells them apart.
        assert!(s.file.starts_with(body), "{} is labelled {}", body, s.file);
    }
    for (name, _) in bodies.iter().chain(&parts) {
        assert!(
            used.contains(name.as_str()),
            "{name} is composed into no shader"
        );
    }
}

#[test]
fn every_part_says_what_it_provides_and_expects() {
    for (name, text) in files("parts") {
        assert!(text.starts_with("// Part: "), "parts/{name}: no header");
        let header: String = text.lines().take_while(|l| l.starts_with("//")).collect();
        for word in ["Provides", "Expects"] {
            assert!(
                header.contains(word),
                "parts/{name}: its header says nothing of what it {word}"
            );
        }
    }
}

#[test]
fn a_broken_shader_is_caught() {
    // The check above is only worth something if naga rejects bad WGSL.
    let broken = "@compute @workgroup_size(1) fn main() { let a: f32 = 1u; }";
    let parsed = naga::front::wgsl::parse_str(broken);
    let rejected = match parsed {
        Err(_) => true,
        Ok(m) => naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&m)
        .is_err(),
    };
    assert!(rejected);
}

#[test]
fn every_native_f16_widening_is_the_one_the_host_can_leave_out() {
    // A device without f16 conversions gets the half-reading kernels with this expression
    // replaced (src/context.rs): each shader that uses `unpack2x16float` must use it only
    // there, and the module built without it must still validate with no capability.
    let (unpack, none) = qkv_wgpu::kernels::F16_UNPACK;
    let mut seen = std::collections::BTreeSet::new();
    for s in ALL_SHADERS.iter() {
        let source = s.wgsl;
        // Outside comments.
        let code: String = source
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = code.matches("unpack2x16float").count();
        if uses == 0 {
            continue;
        }
        let name = s.file;
        assert_eq!(source.matches(unpack).count(), 1, "{name}");
        assert_eq!(
            uses, 2,
            "{name}: unpack2x16float outside the native widening"
        );
        let without = source.replace(unpack, none);
        let module = naga::front::wgsl::parse_str(&without).unwrap();
        let mut caps = naga::valid::Capabilities::empty();
        if without.contains("@builtin(subgroup_") {
            caps |= naga::valid::Capabilities::SUBGROUP;
        }
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if without.contains("@builtin(subgroup_") {
            v.subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(naga::valid::SubgroupOperationSet::all());
        }
        v.validate(&module)
            .unwrap_or_else(|e| panic!("{name} without it:\n{}", e.emit_to_string(&without)));
        seen.insert(name);
    }
    // Exactly the shaders composed with the widening part (`widen.wgsl`), whatever variants
    // there are: naive among them.
    let widening: std::collections::BTreeSet<&str> = ALL_SHADERS
        .iter()
        .filter(|s| s.wgsl.contains("fn widen4("))
        .map(|s| s.file)
        .collect();
    assert!(widening.contains("qkv_naive.wgsl"), "{widening:?}");
    assert_eq!(seen, widening);
}

/// A GPU with every cooperative-matrix configuration and subgroups of 32, for resolving the
/// configurations of every variant without an adapter.
fn gpu_summary() -> qkv_wgpu::AdapterSummary {
    qkv_wgpu::AdapterSummary::described_gpu(&[(8, true), (8, false), (16, true), (16, false)])
}

/// The value of constant `name` of a module whose overrides were all given.
fn constant(module: &naga::Module, name: &str) -> Option<u32> {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))?;
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => Some(v),
        ref e => panic!("{name} is not a u32 literal: {e:?}"),
    }
}

#[test]
fn every_variants_tile_and_workgroup_are_its_shaders() {
    // The host's grid divides the outputs by the spec's tile and sizes workgroups by its
    // invocations; the shader covers TILE_COLS x TILE_ROWS outputs per workgroup of
    // @workgroup_size. Compiled with the spec's own override constants, the two must agree,
    // for every variant's default and every configuration its tuner sweeps (GPU and CPU),
    // and for the source each reads W in blocks with, where it has one.
    use qkv_wgpu::kernels::{sweep, KernelConfig, KernelSpec, SweepTarget};
    use qkv_wgpu::quant::{BlockFormat, WeightType};
    use qkv_wgpu::{ElementType, Kernel};
    let summary = gpu_summary();
    let mut configs: Vec<KernelConfig> = Vec::new();
    for on_cpu in [false, true] {
        for element in ElementType::ALL {
            configs.extend(sweep(&SweepTarget {
                summary: &summary,
                on_cpu,
                element,
            }));
        }
    }
    configs.extend(Kernel::ALL.map(|k| KernelConfig::from(k).for_adapter(&summary)));
    configs.push("coopmat(tile=8,acc=16)".parse().unwrap());
    configs.push("coopmat(tile=16,acc=16,bk=64,stages=1)".parse().unwrap());
    configs.push("regtile(wgx=8,wgy=32)".parse().unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for config in configs {
        if !seen.insert(config) {
            continue;
        }
        let spec = KernelSpec::new(config).unwrap();
        let blocks = spec
            .clone()
            .with_w_formats([WeightType::Blocks(BlockFormat::Q4_0); 3]);
        for spec in std::iter::once(spec).chain(blocks.ok()) {
            check_tile_and_workgroup(config, &spec, &summary);
        }
    }
    assert!(seen.len() > 30, "{} configurations", seen.len());
}

/// [`every_variants_tile_and_workgroup_are_its_shaders`] for one spec.
fn check_tile_and_workgroup(
    config: qkv_wgpu::kernels::KernelConfig,
    spec: &qkv_wgpu::kernels::KernelSpec,
    summary: &qkv_wgpu::AdapterSummary,
) {
    let mut constants: naga::back::PipelineConstants = spec
        .pipeline_constants(false, false)
        .into_iter()
        .chain(spec.device_constants(summary))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if !spec.source.wgsl.contains("override NATIVE_F16") {
        constants.remove("NATIVE_F16");
    }
    let (module, info) = validated(spec.source.file, spec.source.wgsl);
    let (module, _) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, "main")),
        &constants,
    )
    .unwrap_or_else(|e| panic!("{config}: {e:?}"));
    let ep = module
        .entry_points
        .iter()
        .find(|e| e.name == "main")
        .unwrap();
    let [x, y, z] = ep.workgroup_size;
    assert_eq!(
        x * y * z,
        spec.workgroup_invocations(summary),
        "{config}: @workgroup_size of {}",
        spec.source.file
    );
    let tile = (
        constant(&module, "TILE_COLS")
            .unwrap_or_else(|| panic!("{} has no TILE_COLS", spec.source.file)),
        constant(&module, "TILE_ROWS")
            .unwrap_or_else(|| panic!("{} has no TILE_ROWS", spec.source.file)),
    );
    assert_eq!(
        tile, spec.tile,
        "{config}: the tile of {}",
        spec.source.file
    );
}

#[test]
fn the_width_of_w_as_texels_is_the_hosts() {
    // The host lays W's bytes out W_TEXEL_ROW texels a row; w_texels.wgsl reads them so.
    let part = files("parts")
        .into_iter()
        .find(|(name, _)| name == "w_texels.wgsl")
        .expect("parts/w_texels.wgsl")
        .1;
    let line = format!(
        "const W_TEXEL_ROW: u32 = {}u;",
        qkv_wgpu::binding::W_TEXEL_ROW
    );
    assert!(part.contains(&line), "w_texels.wgsl does not say `{line}`");
}

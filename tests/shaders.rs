//! Every WGSL file under `shaders/` parses and validates with naga, with no adapter needed,
//! and every file is one the crate actually compiles (no orphans, no missing files).

use qkv_wgpu::kernels::ALL_SHADERS;
use std::path::Path;

/// Validates with no optional capability, except subgroup operations for a shader that
/// uses them, and f16 and cooperative matrices for one that enables them (the host runs
/// those only on adapters with the SUBGROUP, SHADER_F16 and EXPERIMENTAL_COOPERATIVE_MATRIX
/// features).
fn validate(name: &str, source: &str) {
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
    validator
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate:\n{}", e.emit_to_string(source)));
}

#[test]
fn every_shader_file_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let source = std::fs::read_to_string(&path).unwrap();
            validate(&path.display().to_string(), &source);
            seen += 1;
        }
    }
    assert!(seen > 0, "no .wgsl files found in {}", dir.display());
}

#[test]
fn the_registry_and_the_directory_name_the_same_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = ALL_SHADERS.iter().map(|s| s.file.to_string()).collect();
    registered.sort();
    assert_eq!(on_disk, registered);
    for s in ALL_SHADERS {
        let on_disk = std::fs::read_to_string(dir.join(s.file)).unwrap();
        assert_eq!(
            on_disk, s.wgsl,
            "{} differs from the compiled-in copy",
            s.file
        );
        validate(s.file, s.wgsl);
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

/// The text from `start` to the line that closes it at column 0 (a struct or a function).
fn block<'a>(source: &'a str, start: &str, file: &str) -> &'a str {
    let from = source
        .find(start)
        .unwrap_or_else(|| panic!("{file} has no `{start}`"));
    let len = source[from..]
        .find("\n}\n")
        .unwrap_or_else(|| panic!("{file}: `{start}` never closes"));
    &source[from..from + len + 2]
}

#[test]
fn the_blocks_every_kernel_repeats_are_identical() {
    // WGSL has no includes, so each kernel file carries its own copy of the uniform struct
    // and of the output routing; they must not drift apart (the host writes one Params).
    let kernels: Vec<_> = ALL_SHADERS
        .iter()
        .filter(|s| s.file.starts_with("qkv_"))
        .collect();
    assert!(kernels.len() >= 2);
    for start in [
        "struct Params {",
        "fn out_index(",
        "fn store(",
        "fn half_bits(",
        "fn put(",
        "fn store4(",
        "fn put_word(",
    ] {
        let first = block(kernels[0].wgsl, start, kernels[0].file);
        for s in &kernels[1..] {
            assert_eq!(
                block(s.wgsl, start, s.file),
                first,
                "`{start}` in {} differs from {}",
                s.file,
                kernels[0].file
            );
        }
    }
}

#[test]
fn the_element_widening_every_typed_kernel_repeats_is_identical() {
    // The kernels that read f16 and bf16 widen them with the same two functions.
    let typed: Vec<_> = ALL_SHADERS
        .iter()
        .filter(|s| s.wgsl.contains("fn widen("))
        .collect();
    assert!(typed.len() >= 5, "{} typed kernels", typed.len());
    for start in ["fn widen(", "fn widen4("] {
        let first = block(typed[0].wgsl, start, typed[0].file);
        for s in &typed[1..] {
            assert_eq!(
                block(s.wgsl, start, s.file),
                first,
                "`{start}` in {} differs from {}",
                s.file,
                typed[0].file
            );
        }
    }
}

#[test]
fn every_native_f16_widening_is_the_one_the_host_can_leave_out() {
    // A device without f16 conversions gets the half-reading kernels with this expression
    // replaced (src/context.rs): each shader that uses `unpack2x16float` must use it only
    // there, and the module built without it must still validate with no capability.
    let (unpack, none) = qkv_wgpu::kernels::F16_UNPACK;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
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
        let name = path.file_name().unwrap().to_string_lossy().to_string();
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
        seen += 1;
    }
    assert_eq!(
        seen, 5,
        "naive, texture, subgroup-texture, blocktile, splitk"
    );
}

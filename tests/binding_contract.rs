//! The binding contract, checked from both sides with no adapter needed: every shader is
//! reflected with naga, and its `struct Params` (member names, offsets, size) and every
//! resource it declares (group 0, binding, uniform / storage access / texture) must be what
//! `qkv_wgpu::binding` lays out for the kernel's binding kind.

use naga::{AddressSpace, ImageClass, ImageDimension, ScalarKind, StorageAccess, TypeInner};
use qkv_wgpu::binding::{BindingKind, Params, Slot};
use qkv_wgpu::kernels::{Kernel, KernelSpec, ShaderSource, FILL_NAN};
use qkv_wgpu::quant::{BlockFormat, WeightType};
use std::collections::BTreeMap;

fn parse(file: &str, wgsl: &str) -> naga::Module {
    naga::front::wgsl::parse_str(wgsl)
        .unwrap_or_else(|e| panic!("{file} does not parse:\n{}", e.emit_to_string(wgsl)))
}

/// Binding -> what the shader declares there (all in group 0).
fn declared(file: &str, module: &naga::Module) -> BTreeMap<u32, Slot> {
    let mut out = BTreeMap::new();
    for (_, var) in module.global_variables.iter() {
        let Some(rb) = var.binding else { continue };
        assert_eq!(rb.group, 0, "{file}: {:?} is not in group 0", var.name);
        let slot = match var.space {
            AddressSpace::Uniform => Slot::Uniform,
            AddressSpace::Storage { access } => Slot::Storage {
                read_only: !access.contains(StorageAccess::STORE),
            },
            AddressSpace::Handle => match module.types[var.ty].inner {
                TypeInner::Image {
                    dim: ImageDimension::D2,
                    arrayed: false,
                    class:
                        ImageClass::Sampled {
                            kind: ScalarKind::Uint,
                            multi: false,
                        },
                } => Slot::Texture,
                ref other => panic!("{file}: {:?} is an unexpected handle {other:?}", var.name),
            },
            other => panic!("{file}: {:?} in unexpected space {other:?}", var.name),
        };
        assert!(
            out.insert(rb.binding, slot).is_none(),
            "{file}: binding {} declared twice",
            rb.binding
        );
    }
    out
}

fn params_layout(file: &str, module: &naga::Module) -> (Vec<String>, Vec<u32>, u32) {
    let ty = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("Params"))
        .unwrap_or_else(|| panic!("{file} has no struct Params"))
        .1;
    let TypeInner::Struct { members, span } = &ty.inner else {
        panic!("{file}: Params is not a struct");
    };
    (
        members
            .iter()
            .map(|m| m.name.clone().unwrap_or_default())
            .collect(),
        members.iter().map(|m| m.offset).collect(),
        *span,
    )
}

/// `slot` as reflection sees it: both uniforms are uniforms (their types are checked apart).
fn uniform_as_params(slot: Slot) -> Slot {
    match slot {
        Slot::EpilogueUniform => Slot::Uniform,
        s => s,
    }
}

#[test]
fn every_kernel_declares_its_binding_kinds_layout_and_the_rust_params() {
    // Every variant's default configuration, decode's with W as a storage buffer (a parameter
    // that picks the binding kind: texels=0), and each of them reading W in its stored formats.
    // (A bare coopmat takes its tile from an adapter: its default source, as the variant's.)
    let mut specs: Vec<(ShaderSource, BindingKind)> = Kernel::ALL
        .map(|k| (k.source().expect("a built-in's source"), k.binding()))
        .to_vec();
    let storage = KernelSpec::new("decode(texels=0)".parse().unwrap()).unwrap();
    let resolved = Kernel::ALL
        .iter()
        .filter_map(|&k| KernelSpec::new(k.into()).ok())
        .chain([storage]);
    let q4_0 = [WeightType::Blocks(BlockFormat::Q4_0); 3];
    for spec in resolved {
        specs.push((spec.source, spec.binding));
        // With QK-norm and RoPE in the store, W fused or in blocks.
        for s in [Ok(spec.clone()), spec.clone().with_w_formats(q4_0)] {
            if let Ok(fused) = s.and_then(KernelSpec::with_rope_norm) {
                specs.push((fused.source, fused.binding));
            }
        }
        if let Ok(stored) = spec.with_w_formats(q4_0) {
            specs.push((stored.source, stored.binding));
        }
    }
    let texel_sources = specs.iter().filter(|s| s.1 == BindingKind::Texels).count();
    assert_eq!(
        texel_sources, 3,
        "decode (texels=1) as its variant's default source, resolved, and in blocks"
    );
    let fused = specs
        .iter()
        .filter(|s| s.1 == BindingKind::RopeNorm)
        .count();
    assert_eq!(
        fused, 2,
        "blocktile with the epilogue fused, W fused and in blocks"
    );
    for (source, binding) in specs {
        let module = parse(source.file, source.wgsl);
        // Reflection tells uniforms apart by type only (the epilogue's is checked below).
        let want: BTreeMap<u32, Slot> = (0..)
            .zip(binding.slots())
            .map(|(b, s)| (b, uniform_as_params(s)))
            .collect();
        assert_eq!(
            declared(source.file, &module),
            want,
            "{}: bindings differ from binding kind {binding:?}",
            source.file,
        );
        let (names, offsets, span) = params_layout(source.file, &module);
        assert_eq!(names, Params::MEMBERS, "{}: Params members", source.file);
        let offsets: Vec<usize> = offsets.into_iter().map(|o| o as usize).collect();
        assert_eq!(offsets, Params::OFFSETS, "{}: Params offsets", source.file);
        assert_eq!(
            span as usize,
            std::mem::size_of::<Params>(),
            "{}",
            source.file
        );
    }
}

#[test]
fn fill_nan_binds_one_read_write_buffer() {
    let module = parse(FILL_NAN.file, FILL_NAN.wgsl);
    let want = BTreeMap::from([(0, Slot::Storage { read_only: false })]);
    assert_eq!(declared(FILL_NAN.file, &module), want);
}

#[test]
fn the_check_catches_a_binding_that_drifts() {
    // A shader whose W is read-write where the layout says read-only, and whose Params has
    // two members swapped: both must show up as differences.
    let wgsl = Kernel::Naive
        .source()
        .unwrap()
        .wgsl
        .replace(
            "@group(0) @binding(2) var<storage, read> w",
            "@group(0) @binding(2) var<storage, read_write> w",
        )
        .replacen(
            "    tokens: u32,\n    d_model: u32,",
            "    d_model: u32,\n    tokens: u32,",
            1,
        );
    let module = parse("drifted", &wgsl);
    let want: BTreeMap<u32, Slot> = (0..).zip(BindingKind::Storage.slots()).collect();
    assert_ne!(declared("drifted", &module), want);
    let (names, _, _) = params_layout("drifted", &module);
    assert_ne!(names, Params::MEMBERS);
}

#[test]
fn the_epilogue_pass_declares_its_layout_and_the_rust_uniform() {
    use qkv_wgpu::binding::{EpilogueParams, EPILOGUE_SLOTS};
    use qkv_wgpu::kernels::EPILOGUE;
    let module = parse(EPILOGUE.file, EPILOGUE.wgsl);
    let mut declared = declared(EPILOGUE.file, &module);
    // store.wgsl's bias, which the pass never reads, is not in its layout.
    assert_eq!(declared.remove(&3), Some(Slot::Storage { read_only: true }));
    let want: BTreeMap<u32, Slot> = EPILOGUE_SLOTS
        .iter()
        .map(|&(b, s)| (b, uniform_as_params(s)))
        .collect();
    assert_eq!(declared, want);
    let ty = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("EpilogueParams"))
        .expect("struct EpilogueParams")
        .1;
    let TypeInner::Struct { members, span } = &ty.inner else {
        panic!("EpilogueParams is not a struct");
    };
    let names: Vec<String> = members.iter().map(|m| m.name.clone().unwrap()).collect();
    assert_eq!(names, EpilogueParams::MEMBERS);
    let offsets: Vec<u32> = members.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (0..12).map(|i| i * 4).collect::<Vec<u32>>());
    assert_eq!(*span as usize, std::mem::size_of::<EpilogueParams>());
}

//! A user's own kernel (`qkv try FILE.wgsl`): WGSL checked against the contract
//! docs/KERNELS.md writes down (its bindings, the overrides the host sets, its tile and
//! workgroup, the storage types it claims), then resolved into a [`KernelSpec`] like a
//! built-in variant's, so that the same plan, projector, checks and timing run it.
//!
//! The contract in brief: `@compute fn main`, `@workgroup_size` of literals, `const TILE_COLS`
//! and `const TILE_ROWS` (the outputs one workgroup covers: the host dispatches
//! ceil(n_cols / TILE_COLS) x ceil(tokens / TILE_ROWS) workgroups), the overrides
//! `HAS_BIAS: bool`, `HEAD_LAYOUT: bool` and `ELEM: u32`, and in group 0: 0 the `Params`
//! uniform, 1 X, 2 W, 3 the bias (f32), 4 Q, 5 K, 6 V. Header lines `// qkv: elements f32,
//! f16, bf16` and `// qkv: w_align 4` say which storage types it reads (f32 alone by
//! default) and the multiple of columns W's rows are padded to (1 by default).

use super::config::KernelConfig;
use super::registry::Kernel;
use super::requirements::Requirements;
use super::shaders::ShaderSource;
use super::spec::{Arithmetic, CustomInfo, ElementType, KernelSpec, OperandLayout, OperandTypes};
use super::variant::{Resolved, VariantDef};
use crate::adapter::AdapterSummary;
use crate::binding::{BindingKind, Params};
use naga::{AddressSpace, StorageAccess, TypeInner};
use std::hash::{Hash, Hasher};

/// A user's kernel that meets the contract.
#[derive(Debug, Clone)]
pub struct CustomKernel {
    /// Its name in reports.
    pub label: &'static str,
    /// The source, under a module label unique to this text (the pipeline cache keys by it).
    pub source: ShaderSource,
    /// Output columns x token rows one workgroup covers (`TILE_COLS`, `TILE_ROWS`).
    pub tile: (u32, u32),
    /// Invocations per workgroup (`@workgroup_size`).
    pub invocations: u32,
    /// `@workgroup_size` (x, y, z), with the overrides at their defaults.
    pub workgroup_size: [u32; 3],
    /// Bytes of workgroup storage: the sum of the sizes of every `var<workgroup>` the file
    /// declares, with the overrides at their defaults.
    pub workgroup_storage: u64,
    /// The storage types it reads (`// qkv: elements`).
    pub elements: Vec<ElementType>,
    /// W's rows padded to a multiple of this many columns (`// qkv: w_align`).
    pub w_align: u32,
    /// It declares `NATIVE_F16`.
    pub native_f16: bool,
    /// It reads subgroup builtins.
    pub subgroups: bool,
    /// How X and W are bound (`// qkv: binding textured`: as uint textures).
    pub binding: BindingKind,
}

/// The expected binding `b` of group 0, in words.
fn expected(b: u32) -> &'static str {
    match b {
        0 => "var<uniform> params: Params",
        1 => {
            "var<storage, read> x: array<u32> (or of vectors of u32; of f32 for an f32-only kernel)"
        }
        2 => {
            "var<storage, read> w: array<u32> (or of vectors of u32; of f32 for an f32-only kernel)"
        }
        3 => "var<storage, read> bias: array<f32>",
        4 => "var<storage, read_write> q: array<u32>, array<atomic<u32>> or array<f32>",
        5 => "var<storage, read_write> k: array<u32>, array<atomic<u32>> or array<f32>",
        _ => "var<storage, read_write> v: array<u32>, array<atomic<u32>> or array<f32>",
    }
}

/// The header directives: (elements, w_align, binding).
fn directives(wgsl: &str) -> Result<(Vec<ElementType>, u32, BindingKind), String> {
    let mut elements = vec![ElementType::F32];
    let mut w_align = 1;
    let mut binding = BindingKind::Storage;
    for (i, line) in wgsl.lines().enumerate() {
        let Some(d) = line.trim().strip_prefix("// qkv:") else {
            continue;
        };
        let d = d.trim();
        let at = format!("line {}: `// qkv: {d}`", i + 1);
        if let Some(list) = d.strip_prefix("elements") {
            elements = list
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<ElementType>().map_err(|e| format!("{at}: {e}")))
                .collect::<Result<_, _>>()?;
            if elements.is_empty() {
                return Err(format!("{at}: name the storage types, e.g. f32, f16, bf16"));
            }
        } else if let Some(n) = d.strip_prefix("w_align") {
            w_align = n
                .trim()
                .parse()
                .ok()
                .filter(|n: &u32| (1..=64).contains(n))
                .ok_or_else(|| format!("{at}: w_align takes a number of columns, 1 to 64"))?;
        } else if let Some(kind) = d.strip_prefix("binding") {
            binding = match kind.trim() {
                "storage" => BindingKind::Storage,
                "textured" => BindingKind::Textured,
                _ => {
                    return Err(format!(
                        "{at}: binding is `storage` (the default) or `textured`"
                    ))
                }
            };
        } else {
            return Err(format!(
                "{at}: unknown directive (known: `elements f32, f16, bf16`, `w_align N`, \
                 `binding storage|textured`)"
            ));
        }
    }
    Ok((elements, w_align, binding))
}

/// The scalar of `ty` (an array's element, through atomics), if it is a run-time sized array.
fn array_scalar(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<&'static str> {
    let TypeInner::Array { base, .. } = module.types[ty].inner else {
        return None;
    };
    match module.types[base].inner {
        TypeInner::Scalar(s) if s == naga::Scalar::U32 => Some("u32"),
        TypeInner::Scalar(s) if s == naga::Scalar::F32 => Some("f32"),
        TypeInner::Atomic(s) if s == naga::Scalar::U32 => Some("atomic<u32>"),
        // X and W may be read a vector at a time (the same bytes).
        TypeInner::Vector { scalar, .. } if scalar == naga::Scalar::U32 => Some("vecN<u32>"),
        TypeInner::Vector { scalar, .. } if scalar == naga::Scalar::F32 => Some("vecN<f32>"),
        _ => None,
    }
}

/// Problems with global `var`'s binding against the contract.
fn check_binding(
    module: &naga::Module,
    var: &naga::GlobalVariable,
    (halves, textured): (bool, bool),
    problems: &mut Vec<String>,
) {
    let Some(rb) = &var.binding else { return };
    let name = var.name.as_deref().unwrap_or("?");
    let (g, b) = (rb.group, rb.binding);
    if g != 0 || b > 6 {
        problems.push(format!(
            "`{name}` is bound at @group({g}) @binding({b}); the contract has group 0, \
             bindings 0 to 6 (params, x, w, bias, q, k, v)"
        ));
        return;
    }
    let wrong = |problems: &mut Vec<String>, why: &str| {
        problems.push(format!(
            "@binding({b}) `{name}`: {why}; the contract is `{}`",
            expected(b)
        ))
    };
    if b == 0 {
        if var.space != AddressSpace::Uniform {
            return wrong(problems, "not a uniform");
        }
        let TypeInner::Struct { members, .. } = &module.types[var.ty].inner else {
            return wrong(problems, "not a struct");
        };
        let names: Vec<&str> = members
            .iter()
            .map(|m| m.name.as_deref().unwrap_or("?"))
            .collect();
        let all_u32 = members
            .iter()
            .all(|m| module.types[m.ty].inner == TypeInner::Scalar(naga::Scalar::U32));
        if names != Params::MEMBERS || !all_u32 {
            wrong(
                problems,
                &format!(
                    "its fields are [{}]; Params is {} u32 fields: {}",
                    names.join(", "),
                    Params::MEMBERS.len(),
                    Params::MEMBERS.join(", ")
                ),
            );
        }
        return;
    }
    if textured && (b == 1 || b == 2) {
        let uint_2d = matches!(
            module.types[var.ty].inner,
            TypeInner::Image {
                dim: naga::ImageDimension::D2,
                arrayed: false,
                class: naga::ImageClass::Sampled {
                    kind: naga::ScalarKind::Uint,
                    multi: false
                },
            }
        );
        if !uint_2d {
            wrong(
                problems,
                "not a texture_2d<u32> (`// qkv: binding textured`)",
            );
        }
        return;
    }
    let writes = b >= 4;
    let access = match var.space {
        AddressSpace::Storage { access } => access,
        _ => return wrong(problems, "not a storage buffer"),
    };
    if writes != access.contains(StorageAccess::STORE) {
        let has = if writes { "read" } else { "read_write" };
        return wrong(problems, &format!("declared `{has}`"));
    }
    let scalar = array_scalar(module, var.ty);
    let ok = match (b, scalar) {
        (3, Some("f32")) => true,
        (3, _) => false,
        (1 | 2, Some("u32" | "vecN<u32>")) => true,
        (1 | 2, Some("f32" | "vecN<f32>")) => !halves,
        (_, Some("u32" | "atomic<u32>")) => true,
        (_, Some("f32")) => !halves,
        _ => false,
    };
    if !ok {
        let why = match scalar {
            Some(s) if halves && s.contains("f32") => "array<f32> cannot hold the half types \
                 `// qkv: elements` claims (two per u32 word)"
                .to_string(),
            Some(s) => format!("an array<{s}>"),
            None => "not a run-time sized array".into(),
        };
        wrong(problems, &why);
    }
}

/// Problems with the overrides: HAS_BIAS, HEAD_LAYOUT and ELEM are set by the host and must
/// be declared; NATIVE_F16 may be; any other needs a default.
fn check_overrides(module: &naga::Module, problems: &mut Vec<String>) -> bool {
    let want = [
        ("HAS_BIAS", naga::Scalar::BOOL),
        ("HEAD_LAYOUT", naga::Scalar::BOOL),
        ("ELEM", naga::Scalar::U32),
        ("NATIVE_F16", naga::Scalar::BOOL),
    ];
    let mut native_f16 = false;
    for (name, scalar) in want {
        let found = module
            .overrides
            .iter()
            .find(|(_, o)| o.name.as_deref() == Some(name));
        match found {
            Some((_, o)) if module.types[o.ty].inner != TypeInner::Scalar(scalar) => {
                problems.push(format!("`override {name}` must be a {scalar:?}"))
            }
            Some(_) => native_f16 |= name == "NATIVE_F16",
            None if name != "NATIVE_F16" => problems.push(format!(
                "no `override {name}`: the host sets it on every pipeline (see \
                 docs/KERNELS.md)"
            )),
            None => {}
        }
    }
    for (_, o) in module.overrides.iter() {
        let name = o.name.as_deref().unwrap_or("?");
        if o.init.is_none() && !want.iter().any(|(w, _)| *w == name) {
            problems.push(format!(
                "`override {name}` has no default: the host sets only HAS_BIAS, HEAD_LAYOUT, \
                 ELEM and NATIVE_F16"
            ));
        }
    }
    native_f16
}

/// The value of `const name: u32`, if declared so.
fn const_u32(module: &naga::Module, name: &str) -> Option<u32> {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))?;
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => Some(v),
        naga::Expression::Literal(naga::Literal::I32(v)) => u32::try_from(v).ok(),
        naga::Expression::Literal(naga::Literal::AbstractInt(v)) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// naga's report of an error in `label` (which starts `error: `, as a compiler's does):
/// the error's own words after "{label} is not valid WGSL: ", so that the CLI's `error: `
/// prefix is not doubled.
fn naga_error(label: &str, report: String) -> String {
    let text = report.strip_prefix("error: ").unwrap_or(&report);
    format!("{label} is not valid WGSL: {}", text.trim_end())
}

/// `wgsl` parsed and validated by naga, its errors shown with their line and column.
fn module(label: &str, wgsl: &str) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(wgsl)
        .map_err(|e| naga_error(label, e.emit_to_string_with_path(wgsl, label)))?;
    let caps = naga::valid::Capabilities::SUBGROUP
        | naga::valid::Capabilities::SHADER_FLOAT16
        | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    validator
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all());
    let info = validator
        .validate(&module)
        .map_err(|e| naga_error(label, e.emit_to_string_with_path(wgsl, label)))?;
    Ok((module, info))
}

/// The module with its overrides at their defaults (naga's override processing, which
/// comes with its native back ends).
#[cfg(feature = "native")]
fn resolved(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    problems: &mut Vec<String>,
) -> Option<naga::Module> {
    let constants: naga::back::PipelineConstants =
        [("HAS_BIAS", 0.0), ("HEAD_LAYOUT", 0.0), ("ELEM", 0.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    let stage = Some((naga::ShaderStage::Compute, "main"));
    match naga::back::pipeline_constants::process_overrides(module, info, stage, &constants) {
        Ok((m, _)) => Some(m.into_owned()),
        Err(e) => {
            problems.push(format!("its overrides do not resolve: {e}"));
            None
        }
    }
}

/// In the browser's build naga has no override processing: the tile must be `const` and the
/// workgroup size literal (what the page's editor says when they are not).
#[cfg(not(feature = "native"))]
fn resolved(
    module: &naga::Module,
    _info: &naga::valid::ModuleInfo,
    problems: &mut Vec<String>,
) -> Option<naga::Module> {
    let sized_by_overrides = module
        .entry_points
        .iter()
        .any(|e| e.name == "main" && e.workgroup_size_overrides.is_some());
    if sized_by_overrides {
        problems.push(
            "in the page, `@workgroup_size` must be literal numbers (the CLI also takes \
             overrides)"
                .to_string(),
        );
        return None;
    }
    Some(module.clone())
}

/// What the module asks of a workgroup, with every override at its default and the host's
/// three at false / false / f32 (a tile or workgroup may be derived from overrides of the
/// kernel's own, as the built-in kernels' are).
struct Workgroup {
    /// `@workgroup_size`.
    size: [u32; 3],
    /// Bytes of every `var<workgroup>` together.
    storage: u64,
    /// Output columns x token rows.
    tile: (u32, u32),
}

/// The sum of the sizes of the module's `var<workgroup>` variables.
fn workgroup_storage(module: &naga::Module) -> u64 {
    module
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == AddressSpace::WorkGroup)
        .map(|(_, v)| {
            // A size naga cannot tell before the pipeline (an override the browser's build
            // cannot resolve) counts as 0 here; the browser's WebGPU checks it itself.
            module.types[v.ty]
                .inner
                .try_size(module.to_ctx())
                .unwrap_or(0) as u64
        })
        .sum()
}

/// The module's [`Workgroup`] (None, with the problem, where its overrides do not resolve).
fn tile_and_workgroup(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    problems: &mut Vec<String>,
) -> Option<Workgroup> {
    let module = resolved(module, info, problems)?;
    let module = &module;
    let size = module
        .entry_points
        .iter()
        .find(|e| e.name == "main")
        .map_or([0; 3], |e| e.workgroup_size);
    let tile = match (
        const_u32(module, "TILE_COLS"),
        const_u32(module, "TILE_ROWS"),
    ) {
        (Some(c), Some(r)) if c > 0 && r > 0 => (c, r),
        _ => {
            problems.push(
                "declare `const TILE_COLS: u32` and `const TILE_ROWS: u32` (or overrides with \
                 defaults), at least 1: the output columns and token rows one workgroup covers; \
                 the host dispatches ceil(n_cols / TILE_COLS) x ceil(tokens / TILE_ROWS) \
                 workgroups"
                    .to_string(),
            );
            (1, 1)
        }
    };
    Some(Workgroup {
        size,
        storage: workgroup_storage(module),
        tile,
    })
}

impl CustomKernel {
    /// A starting kernel: the source of the built-in `kernel` with the contract's header
    /// lines (its storage types, its W padding, textures); an error for a variant outside
    /// the contract (a reduce pass, a transposed W).
    pub fn template(kernel: Kernel) -> Result<String, String> {
        let def = kernel.def();
        let fits = def.binding() != BindingKind::SplitK
            && def.reduce().is_none()
            && def.operands() == OperandLayout::RowMajor;
        if !fits {
            return Err(format!(
                "{kernel} is outside the contract (a reduce pass, or W transposed for \
                 cooperative matrices); templates: naive, tiled, regtile, direct, subgroup, \
                 texture, subgroup-texture, blocktile"
            ));
        }
        let elements: Vec<&str> = kernel.dtypes().iter().map(|e| e.name()).collect();
        // A built-in's default configuration; a user's kernel has none to start from.
        let spec = KernelSpec::new(KernelConfig::from(kernel))?;
        let binding = if spec.binding == BindingKind::Textured {
            "// qkv: binding textured\n"
        } else {
            ""
        };
        Ok(format!(
            "// A projection kernel for `qkv try` (the contract: docs/KERNELS.md), started \
             from the\n// built-in `{kernel}` variant. Edit it, then:\n//     qkv try \
             this.wgsl --against auto\n//\n// qkv: elements {}\n// qkv: w_align {}\n{binding}\n{}",
            elements.join(", "),
            spec.w_align,
            spec.source.wgsl
        ))
    }

    /// `wgsl` (from `label`, a file name) checked against the contract: an error with every
    /// problem found, each saying what the contract wants. The text is kept for the life of
    /// the process (pipelines borrow their source).
    pub fn parse(label: &str, wgsl: &str) -> Result<Self, String> {
        let (module, info) = module(label, wgsl)?;
        let (elements, w_align, binding) = directives(wgsl)?;
        let textured = binding == BindingKind::Textured;
        let halves = elements.iter().any(|e| e.is_half());
        let mut problems = Vec::new();
        let has_main = module
            .entry_points
            .iter()
            .any(|e| e.name == "main" && e.stage == naga::ShaderStage::Compute);
        if !has_main {
            let found: Vec<&str> = module
                .entry_points
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            problems.push(format!(
                "no `@compute fn main` (entry points found: {}): the host runs `main`",
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                }
            ));
        }
        let native_f16 = check_overrides(&module, &mut problems);
        for (_, var) in module.global_variables.iter() {
            check_binding(&module, var, (halves, textured), &mut problems);
        }
        let workgroup = if problems.is_empty() {
            tile_and_workgroup(&module, &info, &mut problems)
        } else {
            None
        };
        if !problems.is_empty() {
            return Err(format!(
                "{label} does not meet the kernel contract (docs/KERNELS.md):\n  {}",
                problems.join("\n  ")
            ));
        }
        let workgroup = workgroup.expect("no problems: the workgroup resolved");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        wgsl.hash(&mut hasher);
        let file: &'static str =
            Box::leak(format!("{label}@{:08x}", hasher.finish() as u32).into());
        Ok(Self {
            label: Box::leak(label.to_string().into_boxed_str()),
            source: ShaderSource {
                file,
                wgsl: Box::leak(wgsl.to_string().into_boxed_str()),
                entry_point: "main",
            },
            tile: workgroup.tile,
            invocations: workgroup
                .size
                .iter()
                .map(|&n| n as u64)
                .product::<u64>()
                .min(u32::MAX as u64) as u32,
            workgroup_size: workgroup.size,
            workgroup_storage: workgroup.storage,
            elements,
            w_align,
            native_f16,
            subgroups: wgsl.contains("@builtin(subgroup_"),
            binding,
        })
    }

    /// Refuses a kernel whose workgroup a device with `limits` cannot run, before any
    /// pipeline is made: its invocations, its size along each dimension and its workgroup
    /// storage (which a device need not check itself: past its limit a kernel may run on
    /// memory it does not have), each problem naming the limit and both values.
    pub fn check_limits(&self, limits: &wgpu::Limits) -> Result<(), String> {
        let [x, y, z] = self.workgroup_size;
        let checks = [
            (
                self.invocations as u64,
                limits.max_compute_invocations_per_workgroup,
                "invocations per workgroup (@workgroup_size x * y * z)",
                "max_compute_invocations_per_workgroup",
            ),
            (
                x as u64,
                limits.max_compute_workgroup_size_x,
                "@workgroup_size x",
                "max_compute_workgroup_size_x",
            ),
            (
                y as u64,
                limits.max_compute_workgroup_size_y,
                "@workgroup_size y",
                "max_compute_workgroup_size_y",
            ),
            (
                z as u64,
                limits.max_compute_workgroup_size_z,
                "@workgroup_size z",
                "max_compute_workgroup_size_z",
            ),
            (
                self.workgroup_storage,
                limits.max_compute_workgroup_storage_size,
                "bytes of workgroup storage (every var<workgroup> together)",
                "max_compute_workgroup_storage_size",
            ),
        ];
        let problems: Vec<String> = checks
            .iter()
            .filter(|(value, limit, ..)| *value > *limit as u64)
            .map(|(value, limit, what, name)| {
                format!("{value} {what}; the device allows {limit} ({name})")
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} asks more of a workgroup than this device has:\n  {}",
            self.label,
            problems.join("\n  ")
        ))
    }

    /// The spec that runs this kernel with X, W and Q, K, V all in `element`: the storage
    /// binding, X and W row-major (W's rows padded to `w_align`), f32 arithmetic, no bounds
    /// proven (it always runs with the runtime's checks).
    pub fn spec(&self, element: ElementType) -> Result<KernelSpec, String> {
        if !self.elements.contains(&element) {
            let names: Vec<&str> = self.elements.iter().map(|e| e.name()).collect();
            return Err(format!(
                "{} reads {}; a kernel that reads {element} says so in a header line \
                 `// qkv: elements {}, {element}`",
                self.label,
                names.join(", "),
                names.join(", ")
            ));
        }
        Ok(KernelSpec {
            config: KernelConfig::from(Kernel::User),
            source: self.source,
            reduce: None,
            constants: Vec::new(),
            binding: self.binding,
            tile: self.tile,
            w_align: self.w_align,
            operands: OperandLayout::RowMajor,
            splits: 1,
            invocations: self.invocations,
            types: OperandTypes::all(element),
            requires: Requirements {
                min_subgroup_size: self.subgroups.then_some(1),
                naga_wgsl: self.subgroups,
                storage_buffers: self.binding.storage_buffers(),
                ..Requirements::default()
            },
            arithmetic: Arithmetic::F32Fma,
            bounds_proven: false,
            custom: Some(CustomInfo {
                label: self.label,
                native_f16: self.native_f16,
            }),
            w_formats: None,
        })
    }
}

/// The definition of [`Kernel::User`]: what is true of every user's kernel. Its file's own
/// facts (tile, workgroup, types, binding) are in its spec ([`CustomKernel::spec`]); a
/// user's kernel has no configuration to resolve and no source compiled in.
pub struct UserKernel;

impl VariantDef for UserKernel {
    fn name(&self) -> &'static str {
        "user"
    }
    fn description(&self) -> &'static str {
        "a user's kernel (`qkv try FILE.wgsl`), checked against the contract of docs/KERNELS.md"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::User, &[])
    }
    fn resolve(&self, _: &KernelConfig) -> Result<Resolved, String> {
        Err(
            "a user's kernel is resolved from its file (`qkv try FILE.wgsl`), not from a \
             configuration"
                .to_string(),
        )
    }
    fn sources(&self) -> Vec<ShaderSource> {
        Vec::new()
    }
    /// `NATIVE_F16` where the device widens f16 in hardware, only for a kernel that
    /// declares the override.
    fn device_constants(
        &self,
        spec: &KernelSpec,
        summary: &AdapterSummary,
    ) -> Vec<(&'static str, f64)> {
        let declared = spec.custom.is_some_and(|c| c.native_f16);
        let reads_f16 = spec.types.x == ElementType::F16 || spec.types.w == ElementType::F16;
        if declared && reads_f16 && summary.shader_f16 && summary.f16_unpack {
            vec![("NATIVE_F16", 1.0)]
        } else {
            Vec::new()
        }
    }
}

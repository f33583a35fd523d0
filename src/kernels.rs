//! The registry of projection kernels: every variant, its WGSL source, and how it is
//! dispatched. The CLI, the tests and the benchmarks all load shaders from here, so there is
//! exactly one copy of each.
//!
//! | # | name    | file                     | idea                                             |
//! |---|---------|--------------------------|--------------------------------------------------|
//! | 0 | `naive` | `shaders/qkv_naive.wgsl` | one output per invocation, straight from storage |
//! | 1 | `tiled` | `shaders/qkv_tiled.wgsl` | 16x16 workgroup-memory tiles over d_model        |
//! | 2 | `regtile` | `shaders/qkv_regtile.wgsl` | 4x4 outputs per invocation from workgroup- |
//! |   |         |                          | memory tiles, vec4 W; tunable `wgx`, `wgy` (GPUs) |
//! | 3 | `direct`| `shaders/qkv_direct.wgsl`| 8x4 outputs per invocation from registers,       |
//! |   |         |                          | storage only, no barriers; tunable `wg`          |
//! | 4 | `subgroup` | `shaders/qkv_subgroup.wgsl` | 32x4 outputs per invocation, X shared by |
//! |   |         |                          | subgroup broadcasts; needs SUBGROUP, size >= 8   |
//! | 5 | `texture` | `shaders/qkv_texture.wgsl` | 16x4 outputs per invocation, X and W read  |
//! |   |         |                          | through textures, no barriers; tunable `wg`      |
//! | 6 | `subgroup-texture` | `shaders/qkv_subgroup_texture.wgsl` | 32x4 per invocation, |
//! |   |         |                          | textures plus subgroup broadcasts of X           |
//! | 7 | `blocktile` | `shaders/qkv_blocktile.wgsl` | 8x8 outputs per invocation, 128x128  |
//! |   |         |                          | workgroup tiles, prefetch; the GPU kernel        |
//! | 8 | `splitk` | `shaders/qkv_splitk.wgsl` | `blocktile` over `splits` ranges of d_model, |
//! |   |         |                          | then a reduce pass; small batches on GPUs        |
//!
//! Run one variant:
//! ```text
//! cargo run --release -- run --kernel naive    # or --kernel 0
//! cargo run --release -- run --kernel tiled    # or --kernel 1 (the default)
//! cargo run --release -- run --kernel regtile  # or --kernel 2; regtile(wgx=8,wgy=16)
//! cargo run --release -- run --kernel direct   # or --kernel 3; direct(wg=16) sets its size
//! cargo run --release -- run --kernel subgroup # or --kernel 4, where the adapter has subgroups
//! cargo run --release -- run --kernel texture  # or --kernel 5
//! cargo run --release -- run --kernel subgroup-texture # or --kernel 6, with subgroups
//! cargo run --release -- run --kernel blocktile # or --kernel 7
//! cargo run --release -- run --kernel splitk   # or --kernel 8; splitk(splits=8)
//! cargo run --release -- run --kernel all      # every variant on the same inputs
//! ```

use std::fmt;
use std::str::FromStr;

/// A projection kernel variant. The discriminant is its number on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    /// One output per invocation, no workgroup memory.
    Naive = 0,
    /// Workgroup-memory tiles over d_model.
    Tiled = 1,
    /// Register-blocked 4x4 per invocation over workgroup-memory tiles.
    Regtile = 2,
    /// Register-blocked, storage only, no barriers.
    Direct = 3,
    /// `Direct` with X shared through subgroup broadcasts.
    Subgroup = 4,
    /// Register-blocked, X and W read through textures.
    Texture = 5,
    /// `Texture` with X shared through subgroup broadcasts.
    SubgroupTexture = 6,
    /// Register-blocked 8x8 per invocation over 128x128 workgroup tiles, with prefetch.
    Blocktile = 7,
    /// `Blocktile` over ranges of d_model (split-K), partial sums added by a second pass.
    Splitk = 8,
}

/// A WGSL source file under `shaders/`, compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShaderSource {
    /// File name under `shaders/`, used as the shader module's label.
    pub file: &'static str,
    /// The WGSL text.
    pub wgsl: &'static str,
    /// Entry point.
    pub entry_point: &'static str,
}

/// The utility shader that fills output buffers with NaN before each dispatch.
pub const FILL_NAN: ShaderSource = ShaderSource {
    file: "fill_nan.wgsl",
    wgsl: include_str!("../shaders/fill_nan.wgsl"),
    entry_point: "main",
};

/// Every shader the crate compiles, for checks that must cover all of them.
pub const ALL_SHADERS: [ShaderSource; 10] = [
    Kernel::Naive.source(),
    Kernel::Tiled.source(),
    Kernel::Regtile.source(),
    Kernel::Direct.source(),
    Kernel::Subgroup.source(),
    Kernel::Texture.source(),
    Kernel::SubgroupTexture.source(),
    Kernel::Blocktile.source(),
    Kernel::Splitk.source(),
    FILL_NAN,
];

impl ShaderSource {
    /// Whether the shader uses subgroup operations (it reads `subgroup_invocation_id`).
    pub fn needs_subgroups(&self) -> bool {
        self.wgsl.contains("subgroup_invocation_id")
    }
}

impl Kernel {
    /// Every variant, in number order.
    pub const ALL: [Kernel; 9] = [
        Kernel::Naive,
        Kernel::Tiled,
        Kernel::Regtile,
        Kernel::Direct,
        Kernel::Subgroup,
        Kernel::Texture,
        Kernel::SubgroupTexture,
        Kernel::Blocktile,
        Kernel::Splitk,
    ];

    /// The variant used where nothing is tuned (`qkv explain`, library callers that do not
    /// call [`crate::tune::choose`]): workgroup-memory tiling, the classic GPU layout.
    /// `qkv run`, `project` and `bench` autotune by default instead.
    pub const DEFAULT: Kernel = Kernel::Tiled;

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Naive => "naive",
            Kernel::Tiled => "tiled",
            Kernel::Regtile => "regtile",
            Kernel::Direct => "direct",
            Kernel::Subgroup => "subgroup",
            Kernel::Texture => "texture",
            Kernel::SubgroupTexture => "subgroup-texture",
            Kernel::Blocktile => "blocktile",
            Kernel::Splitk => "splitk",
        }
    }

    /// The variant's number (`--kernel 0`).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// One line on what the variant does.
    pub const fn description(self) -> &'static str {
        match self {
            Kernel::Naive => "one output per invocation, operands straight from storage",
            Kernel::Tiled => "16x16 workgroup-memory tiles of X and W over d_model",
            Kernel::Regtile => "4x4 outputs per invocation from workgroup-memory tiles, vec4 W",
            Kernel::Direct => {
                "8x4 outputs per invocation in registers, no workgroup memory or barriers"
            }
            Kernel::Subgroup => "32x4 outputs per invocation, X shared through subgroup broadcasts",
            Kernel::Texture => "16x4 outputs per invocation, X and W read through textures",
            Kernel::SubgroupTexture => {
                "32x4 outputs per invocation, X and W through textures, X shared by subgroups"
            }
            Kernel::Blocktile => {
                "8x8 outputs per invocation from 128x128 workgroup-memory tiles, prefetched"
            }
            Kernel::Splitk => {
                "blocktile over `splits` ranges of d_model, partial sums added by a second pass"
            }
        }
    }

    /// Whether the kernel reads X and W through textures (see [`crate::projector::TextureLayout`]) rather than
    /// storage buffers.
    pub const fn reads_textures(self) -> bool {
        matches!(self, Kernel::Texture | Kernel::SubgroupTexture)
    }

    /// The second pass that adds up partial sums (split-K kernels), if the kernel has one.
    pub const fn reduce_pass(self) -> Option<ShaderSource> {
        match self {
            Kernel::Splitk => {
                let main = self.source();
                Some(ShaderSource {
                    entry_point: "reduce",
                    ..main
                })
            }
            _ => None,
        }
    }

    /// Whether the kernel uses subgroup operations.
    pub const fn needs_subgroups(self) -> bool {
        matches!(self, Kernel::Subgroup | Kernel::SubgroupTexture)
    }

    /// The variant's WGSL source.
    pub const fn source(self) -> ShaderSource {
        match self {
            Kernel::Naive => ShaderSource {
                file: "qkv_naive.wgsl",
                wgsl: include_str!("../shaders/qkv_naive.wgsl"),
                entry_point: "main",
            },
            Kernel::Tiled => ShaderSource {
                file: "qkv_tiled.wgsl",
                wgsl: include_str!("../shaders/qkv_tiled.wgsl"),
                entry_point: "main",
            },
            Kernel::Regtile => ShaderSource {
                file: "qkv_regtile.wgsl",
                wgsl: include_str!("../shaders/qkv_regtile.wgsl"),
                entry_point: "main",
            },
            Kernel::Direct => ShaderSource {
                file: "qkv_direct.wgsl",
                wgsl: include_str!("../shaders/qkv_direct.wgsl"),
                entry_point: "main",
            },
            Kernel::Subgroup => ShaderSource {
                file: "qkv_subgroup.wgsl",
                wgsl: include_str!("../shaders/qkv_subgroup.wgsl"),
                entry_point: "main",
            },
            Kernel::Texture => ShaderSource {
                file: "qkv_texture.wgsl",
                wgsl: include_str!("../shaders/qkv_texture.wgsl"),
                entry_point: "main",
            },
            Kernel::SubgroupTexture => ShaderSource {
                file: "qkv_subgroup_texture.wgsl",
                wgsl: include_str!("../shaders/qkv_subgroup_texture.wgsl"),
                entry_point: "main",
            },
            Kernel::Blocktile => ShaderSource {
                file: "qkv_blocktile.wgsl",
                wgsl: include_str!("../shaders/qkv_blocktile.wgsl"),
                entry_point: "main",
            },
            Kernel::Splitk => ShaderSource {
                file: "qkv_splitk.wgsl",
                wgsl: include_str!("../shaders/qkv_splitk.wgsl"),
                entry_point: "main",
            },
        }
    }

    /// Parses a list of kernels separated by ';' or ',' (outside parentheses), or `all`;
    /// each may carry parameters: `naive;direct(wg=32)`.
    pub fn parse_list(list: &str) -> Result<Vec<KernelConfig>, String> {
        if list.trim() == "all" {
            return Ok(Kernel::ALL.map(KernelConfig::from).to_vec());
        }
        let mut configs: Vec<KernelConfig> = Vec::new();
        let (mut depth, mut start) = (0, 0);
        let mut parts = Vec::new();
        for (i, ch) in list.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' | ';' if depth == 0 => {
                    parts.push(&list[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&list[start..]);
        for part in parts {
            let config: KernelConfig = part.parse()?;
            if !configs.contains(&config) {
                configs.push(config);
            }
        }
        Ok(configs)
    }
}

/// A kernel variant with its tuning parameters: the WGSL override constants it is compiled
/// with. Variants without parameters have `wg` 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelConfig {
    /// The variant.
    pub kernel: Kernel,
    /// Invocations per workgroup (`direct`, `subgroup`, `texture`, `subgroup-texture`), along
    /// columns (`regtile`), or the number of d_model ranges (`splitk`'s `splits`).
    pub wg: u32,
    /// Invocations along token rows (`regtile` only; 0 otherwise).
    pub wgy: u32,
}

impl From<Kernel> for KernelConfig {
    fn from(kernel: Kernel) -> Self {
        KernelConfig::default_for(kernel)
    }
}

impl KernelConfig {
    /// The configuration a variant runs with when none was tuned.
    pub const fn default_for(kernel: Kernel) -> Self {
        let (wg, wgy) = match kernel {
            Kernel::Naive | Kernel::Tiled | Kernel::Blocktile => (0, 0),
            Kernel::Regtile => (16, 16),
            Kernel::Splitk => (4, 0),
            Kernel::Direct | Kernel::Subgroup => (64, 0),
            Kernel::Texture | Kernel::SubgroupTexture => (32, 0),
        };
        Self { kernel, wg, wgy }
    }

    /// Checks the parameters against what the variant's shader supports.
    pub fn check(&self) -> Result<(), String> {
        let ok = match self.kernel {
            Kernel::Naive | Kernel::Tiled | Kernel::Blocktile => self.wg == 0 && self.wgy == 0,
            Kernel::Regtile => {
                (1..=64).contains(&self.wg)
                    && (1..=64).contains(&self.wgy)
                    && self.wg * self.wgy <= 1024
            }
            Kernel::Direct | Kernel::Texture => (1..=256).contains(&self.wg) && self.wgy == 0,
            Kernel::Splitk => (1..=64).contains(&self.wg) && self.wgy == 0,
            Kernel::Subgroup | Kernel::SubgroupTexture => {
                (8..=256).contains(&self.wg) && self.wg.is_multiple_of(8) && self.wgy == 0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{self} is not a valid configuration of {}",
                self.kernel
            ))
        }
    }

    /// The row stride of W the kernel reads: `n_out`, or `n_out` rounded up to a multiple of
    /// 4 for kernels that load W as vec4 (the padding is zeros and is never stored).
    pub const fn w_stride(&self, n_out: u32) -> u32 {
        match self.kernel {
            Kernel::Subgroup
            | Kernel::Regtile
            | Kernel::Texture
            | Kernel::SubgroupTexture
            | Kernel::Blocktile
            | Kernel::Splitk => n_out.div_ceil(4) * 4,
            _ => n_out,
        }
    }

    /// Why this adapter cannot run the configuration, if it cannot.
    pub fn unsupported_on(&self, summary: &crate::context::AdapterSummary) -> Option<String> {
        let subgroups = self.kernel.needs_subgroups();
        if subgroups && !summary.subgroup {
            Some(format!(
                "kernel {} needs subgroup operations, which '{}' does not offer",
                self.kernel, summary.name
            ))
        } else if subgroups && summary.subgroup_size.0 < 8 {
            Some(format!(
                "kernel {} needs subgroups of at least 8 invocations; '{}' may use {}",
                self.kernel, summary.name, summary.subgroup_size.0
            ))
        } else {
            None
        }
    }

    /// The override constants the pipeline is compiled with (besides HAS_BIAS, HEAD_LAYOUT).
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        match self.kernel {
            Kernel::Naive | Kernel::Tiled | Kernel::Blocktile => Vec::new(),
            Kernel::Regtile => vec![("WG_X", self.wg as f64), ("WG_Y", self.wgy as f64)],
            Kernel::Splitk => vec![("SPLITS", self.wg as f64)],
            Kernel::Direct | Kernel::Subgroup | Kernel::Texture | Kernel::SubgroupTexture => {
                vec![("WG", self.wg as f64)]
            }
        }
    }

    /// Output elements (columns, rows) covered by one workgroup: the dispatch grid is
    /// (ceil(n_out / cols), ceil(tokens / rows), 1).
    pub const fn workgroup_tile(&self) -> (u32, u32) {
        match self.kernel {
            Kernel::Naive | Kernel::Tiled => (16, 16),
            Kernel::Regtile => (self.wg * 4, self.wgy * 4),
            Kernel::Direct => (self.wg * 4, 8),
            Kernel::Subgroup | Kernel::SubgroupTexture => (self.wg * 4, 32),
            Kernel::Texture => (self.wg * 4, 16),
            Kernel::Blocktile | Kernel::Splitk => (128, 128),
        }
    }
}

impl FromStr for KernelConfig {
    type Err = String;

    /// A kernel name or number, optionally with parameters: `direct`, `3`,
    /// `direct(wg=32)`; unnamed parameters keep their defaults.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, params) = match s.split_once('(') {
            Some((n, rest)) => (
                n,
                rest.strip_suffix(')')
                    .ok_or_else(|| format!("'{s}': missing ')'"))?,
            ),
            None => (s, ""),
        };
        let mut config = KernelConfig::default_for(name.trim().parse()?);
        for kv in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| format!("'{kv}': expected key=value"))?;
            let value: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("'{kv}': {} is not a whole number", value.trim()))?;
            match key.trim() {
                "wg" | "wgx" | "splits" => config.wg = value,
                "wgy" => config.wgy = value,
                other => {
                    return Err(format!(
                        "'{other}' is not a parameter (wg, wgx, wgy, splits)"
                    ))
                }
            }
        }
        config.check()?;
        Ok(config)
    }
}

impl fmt::Display for KernelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kernel {
            Kernel::Naive | Kernel::Tiled | Kernel::Blocktile => write!(f, "{}", self.kernel),
            Kernel::Regtile => write!(f, "{}(wgx={},wgy={})", self.kernel, self.wg, self.wgy),
            Kernel::Splitk => write!(f, "{}(splits={})", self.kernel, self.wg),
            Kernel::Direct | Kernel::Subgroup | Kernel::Texture | Kernel::SubgroupTexture => {
                write!(f, "{}(wg={})", self.kernel, self.wg)
            }
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kernel::ALL
            .into_iter()
            .find(|k| s == k.name() || s.parse::<u32>().ok() == Some(k.number()))
            .ok_or_else(|| {
                let known: Vec<String> = Kernel::ALL
                    .iter()
                    .map(|k| format!("{} ({})", k.name(), k.number()))
                    .collect();
                format!(
                    "unknown kernel '{s}'; known kernels: {}, or 'all'",
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for k in Kernel::ALL {
            assert_eq!(k.name().parse::<Kernel>(), Ok(k));
            assert_eq!(k.number().to_string().parse::<Kernel>(), Ok(k));
        }
        assert!("bogus".parse::<Kernel>().unwrap_err().contains("naive (0)"));
        assert!("9".parse::<Kernel>().is_err());
    }

    #[test]
    fn lists_parse_dedup_and_expand_all() {
        let k = |k: Kernel| KernelConfig::from(k);
        assert_eq!(
            Kernel::parse_list("all").unwrap(),
            Kernel::ALL.map(KernelConfig::from).to_vec()
        );
        assert_eq!(
            Kernel::parse_list("1, naive,tiled").unwrap(),
            vec![k(Kernel::Tiled), k(Kernel::Naive)]
        );
        assert!(Kernel::parse_list("tiled,nope").is_err());
        let c = Kernel::parse_list("0,direct( wg=32 );3").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[1].wg, 32);
        assert_eq!(c[1].to_string(), "direct(wg=32)");
        assert_eq!(c[1].to_string().parse::<KernelConfig>(), Ok(c[1]));
        assert_eq!(c[2], KernelConfig::from(Kernel::Direct));
        assert!("direct(wg=999)".parse::<KernelConfig>().is_err());
        assert!("direct(rows=2)".parse::<KernelConfig>().is_err());
        assert!("direct(wgy=4)".parse::<KernelConfig>().is_err());
        let r: KernelConfig = "regtile(wgx=8,wgy=16)".parse().unwrap();
        assert_eq!((r.wg, r.wgy, r.workgroup_tile()), (8, 16, (32, 64)));
        assert_eq!(r.to_string().parse::<KernelConfig>(), Ok(r));
        assert!("naive(wg=2)".parse::<KernelConfig>().is_err());
        let k: KernelConfig = "splitk(splits=8)".parse().unwrap();
        assert_eq!((k.wg, k.to_string()), (8, "splitk(splits=8)".to_string()));
        assert_eq!(k.to_string().parse::<KernelConfig>(), Ok(k));
        assert!("splitk(splits=0)".parse::<KernelConfig>().is_err());
        assert!("direct(wg=8".parse::<KernelConfig>().is_err());
    }
}

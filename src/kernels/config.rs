//! A kernel configuration as users and the tuning cache name it: a variant and the values of
//! its tuning knobs, parsed from and displayed as `direct(wg=32)`, `regtile(wgx=8,wgy=16)`,
//! `splitk(splits=8)`. It is checked here and resolved once into a
//! [`KernelSpec`](super::KernelSpec), whose typed [`Variant`](super::Variant) is what the rest
//! of the crate reads.

use super::registry::Kernel;
use std::fmt;
use std::str::FromStr;

/// A kernel variant with the raw values of its tuning knobs, as named on the command line and
/// stored in the tuning cache. `wg` is the variant's first knob (`wg`, `wgx`, `splits` or
/// `tile`), `wgy` its second (`regtile`'s `wgy`, `coopmat`'s `acc`), `block` `coopmat`'s
/// block shape; variants without knobs have them all 0. Resolve it with
/// [`KernelSpec::new`](super::KernelSpec::new) to read them typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelConfig {
    /// The variant.
    pub kernel: Kernel,
    /// First knob: invocations per workgroup (`direct`, `subgroup`, `texture`,
    /// `subgroup-texture`), invocations along columns (`regtile`'s `wgx`), or the number of
    /// d_model ranges (`splitk`'s `splits`), or the cooperative matrices' size (`coopmat`'s
    /// `tile`: 8 or 16).
    pub wg: u32,
    /// Second knob: invocations along token rows (`regtile`'s `wgy`), or the accumulator's
    /// bits (`coopmat`'s `acc`: 32 or 16); 0 otherwise.
    pub wgy: u32,
    /// `coopmat`'s block (all 0 for every other variant, and for a bare `coopmat`, whose
    /// tile and block come from the adapter).
    pub block: CoopBlock,
}

/// `coopmat`'s block: each workgroup computes `bm` x `bn` outputs as subgroups that each own a
/// `wm` x `wn` part of it (4 x 2 or 4 x 4 accumulator matrices), walking d_model `bk` at a
/// time through `stages` staging buffers (2: the next step loads while this one multiplies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CoopBlock {
    /// Token rows per workgroup.
    pub bm: u32,
    /// Output columns per workgroup.
    pub bn: u32,
    /// Token rows per subgroup (4 matrices).
    pub wm: u32,
    /// Output columns per subgroup (2 or 4 matrices).
    pub wn: u32,
    /// The step along d_model: 16, 32 or 64, a multiple of the tile.
    pub bk: u32,
    /// Staging buffers: 1 or 2.
    pub stages: u32,
}

impl CoopBlock {
    /// The block `coopmat(tile=T)` runs with unless told otherwise. 16x16 (NVIDIA, AMD): 8
    /// subgroups of 4 x 2 matrices, 128 x 128 outputs (CUTLASS's usual block), steps of 32,
    /// two stages. 8x8 (Apple, lavapipe): 8 subgroups of 4 x 4 matrices, 128 x 64 outputs,
    /// one stage, the fastest of the blocks timed on Mesa 26's lavapipe (BENCHMARKS.md).
    pub const fn default_for(tile: u32) -> Self {
        if tile == 8 {
            return Self {
                bm: 16 * tile,
                bn: 8 * tile,
                wm: 4 * tile,
                wn: 4 * tile,
                bk: 32,
                stages: 1,
            };
        }
        Self {
            bm: 8 * tile,
            bn: 8 * tile,
            wm: 4 * tile,
            wn: 2 * tile,
            bk: 32,
            stages: 2,
        }
    }

    /// Subgroups per workgroup: (bm / wm) x (bn / wn).
    pub const fn subgroups(&self) -> u32 {
        (self.bm / self.wm) * (self.bn / self.wn)
    }

    /// Bytes of workgroup memory on a device: the staged steps of X and W^T (f16 rows of
    /// `bk` padded by 8) and one accumulator matrix per subgroup for the epilogue.
    pub const fn workgroup_bytes(&self, tile: u32, f32_accumulator: bool) -> u32 {
        let acc = if f32_accumulator { 4 } else { 2 };
        self.stages * (self.bm + self.bn) * (self.bk + 8) * 2 + self.subgroups() * tile * tile * acc
    }

    /// 16-byte pieces of X and of W^T each invocation stages per step, with `invocations`
    /// per workgroup (the shader holds at most 8 of each).
    pub const fn pieces_per_invocation(&self, invocations: u32) -> (u32, u32) {
        let per_row = self.bk / 8;
        let inv = if invocations == 0 { 1 } else { invocations };
        (
            (self.bm * per_row).div_ceil(inv),
            (self.bn * per_row).div_ceil(inv),
        )
    }

    /// Whether the block is one the `coopmat` sources run with `tile` x `tile` matrices.
    fn check(&self, tile: u32) -> bool {
        let b = self;
        b.wm == 4 * tile
            && (b.wn == 2 * tile || b.wn == 4 * tile)
            && b.bm >= b.wm
            && b.bm.is_multiple_of(b.wm)
            && b.bn >= b.wn
            && b.bn.is_multiple_of(b.wn)
            && (1..=16).contains(&b.subgroups())
            && matches!(b.bk, 16 | 32 | 64)
            && b.bk.is_multiple_of(tile)
            && matches!(b.stages, 1 | 2)
    }
}

impl From<Kernel> for KernelConfig {
    fn from(kernel: Kernel) -> Self {
        KernelConfig::default_for(kernel)
    }
}

/// The knobs of a variant as typed, with their ranges: shown by `--help` and in errors.
const fn knobs(kernel: Kernel) -> &'static str {
    match kernel {
        Kernel::Naive | Kernel::Tiled | Kernel::Blocktile => "",
        Kernel::Regtile => "wgx = 1..=64, wgy = 1..=64, wgx·wgy <= 1024",
        Kernel::Direct | Kernel::Texture => "wg = 1..=256",
        Kernel::Subgroup | Kernel::SubgroupTexture => "wg = 8..=256, a multiple of 8",
        Kernel::Splitk => "splits = 1..=64",
        Kernel::Coopmat => {
            "tile = 8 | 16, acc = 32 | 16 (the accumulator's bits), bm x bn outputs per \
             workgroup of subgroups owning wm x wn each (wm = 4·tile, wn = 2·tile | 4·tile, \
             at most 16 subgroups), bk = 16 | 32 | 64 along d_model, stages = 1 | 2; none: the \
             adapter's largest tile, f32 accumulator where offered, and the tile's default block \
             (16x16: 128x128 of 8 subgroups of 4x2 matrices, bk 32, 2 stages; 8x8: 128x64 of 8 \
             subgroups of 4x4, 1 stage)"
        }
    }
}

impl KernelConfig {
    /// A variant with its two first knobs (`block` all 0).
    pub const fn new(kernel: Kernel, wg: u32, wgy: u32) -> Self {
        Self {
            kernel,
            wg,
            wgy,
            block: CoopBlock {
                bm: 0,
                bn: 0,
                wm: 0,
                wn: 0,
                bk: 0,
                stages: 0,
            },
        }
    }

    /// `coopmat` with `tile` x `tile` matrices, an f32 accumulator or an f16 one, and `block`.
    pub const fn coopmat(tile: u32, f32_accumulator: bool, block: CoopBlock) -> Self {
        Self {
            kernel: Kernel::Coopmat,
            wg: tile,
            wgy: if f32_accumulator { 32 } else { 16 },
            block,
        }
    }

    /// The configuration a variant runs with when none was tuned.
    pub const fn default_for(kernel: Kernel) -> Self {
        let (wg, wgy) = match kernel {
            Kernel::Naive | Kernel::Tiled | Kernel::Blocktile => (0, 0),
            Kernel::Regtile => (16, 16),
            Kernel::Splitk => (4, 0),
            Kernel::Direct | Kernel::Subgroup => (64, 0),
            Kernel::Texture | Kernel::SubgroupTexture => (32, 0),
            // 0, 0: chosen from the adapter ([`KernelConfig::for_adapter`]).
            Kernel::Coopmat => (0, 0),
        };
        Self::new(kernel, wg, wgy)
    }

    /// Checks the knobs against what the variant's shader supports.
    pub fn check(&self) -> Result<(), String> {
        let no_block = self.block == CoopBlock::default();
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
            Kernel::Coopmat => {
                (self.wg, self.wgy) == (0, 0) && no_block
                    || matches!(self.wg, 8 | 16)
                        && matches!(self.wgy, 16 | 32)
                        && self.block.check(self.wg)
            }
        };
        let ok = ok && (no_block || self.kernel == Kernel::Coopmat);
        if ok {
            return Ok(());
        }
        let valid = match knobs(self.kernel) {
            "" => "it takes no parameters".to_string(),
            k => format!("valid: {k}"),
        };
        Err(format!(
            "{self} is not a valid configuration of {} ({valid})",
            self.kernel
        ))
    }
}

impl Kernel {
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

    /// Every variant with its number, what it does, its default configuration and the
    /// ranges of its knobs, one per line: what `--kernel`'s help lists.
    pub fn help_list() -> String {
        Kernel::ALL
            .iter()
            .map(|&k| {
                let knobs = match knobs(k) {
                    "" => String::new(),
                    r => format!(" [default {}; {r}]", KernelConfig::from(k)),
                };
                format!("{} {}: {}{knobs}", k.number(), k.name(), k.description())
            })
            .collect::<Vec<_>>()
            .join("\n")
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
            let b = &mut config.block;
            match key.trim() {
                "wg" | "wgx" | "splits" | "tile" => config.wg = value,
                "wgy" | "acc" => config.wgy = value,
                "bm" => b.bm = value,
                "bn" => b.bn = value,
                "wm" => b.wm = value,
                "wn" => b.wn = value,
                "bk" => b.bk = value,
                "stages" => b.stages = value,
                other => {
                    return Err(format!(
                        "'{other}' is not a parameter (wg, wgx, wgy, splits, tile, acc, bm, bn, \
                         wm, wn, bk, stages)"
                    ))
                }
            }
        }
        if config.kernel == Kernel::Coopmat && config.wg != 0 {
            // A tile without an accumulator: f32, the one to use wherever it is offered; a
            // block's unnamed fields keep the tile's defaults.
            if config.wgy == 0 {
                config.wgy = 32;
            }
            let d = CoopBlock::default_for(config.wg);
            let b = &mut config.block;
            for (v, default) in [
                (&mut b.bm, d.bm),
                (&mut b.bn, d.bn),
                (&mut b.wm, d.wm),
                (&mut b.wn, d.wn),
                (&mut b.bk, d.bk),
                (&mut b.stages, d.stages),
            ] {
                if *v == 0 {
                    *v = default;
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
            Kernel::Coopmat if self.wg == 0 => write!(f, "{}", self.kernel),
            Kernel::Coopmat => {
                let b = &self.block;
                write!(
                    f,
                    "{}(tile={},acc={},bm={},bn={},wm={},wn={},bk={},stages={})",
                    self.kernel, self.wg, self.wgy, b.bm, b.bn, b.wm, b.wn, b.bk, b.stages
                )
            }
            Kernel::Direct | Kernel::Subgroup | Kernel::Texture | Kernel::SubgroupTexture => {
                write!(f, "{}(wg={})", self.kernel, self.wg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c: KernelConfig = "coopmat(tile=16)".parse().unwrap();
        assert_eq!((c.wg, c.wgy, c.block), (16, 32, CoopBlock::default_for(16)));
        assert_eq!(
            c.to_string(),
            "coopmat(tile=16,acc=32,bm=128,bn=128,wm=64,wn=32,bk=32,stages=2)"
        );
        assert_eq!(c.to_string().parse::<KernelConfig>(), Ok(c));
        let w: KernelConfig = "coopmat(tile=16,bn=256,wn=64,stages=1)".parse().unwrap();
        assert_eq!((w.block.bn, w.block.wn, w.block.subgroups()), (256, 64, 8));
        assert_eq!(w.to_string().parse::<KernelConfig>(), Ok(w));
        for bad in [
            "coopmat(tile=16,wm=32)",
            "coopmat(tile=16,wn=48)",
            "coopmat(tile=16,bm=96)",
            "coopmat(tile=16,bk=8)",
            "coopmat(tile=16,bk=128)",
            "coopmat(tile=16,stages=3)",
            "coopmat(tile=16,bm=1024,bn=512)",
            "direct(wg=32,bm=128)",
        ] {
            let e = bad.parse::<KernelConfig>().unwrap_err();
            assert!(e.contains("not a valid configuration"), "{bad}: {e}");
        }
        assert!("coopmat(tile=32)".parse::<KernelConfig>().is_err());
        assert!("coopmat(acc=8)".parse::<KernelConfig>().is_err());
        assert!(
            "coopmat(acc=16)".parse::<KernelConfig>().is_err(),
            "a tile is needed"
        );
        let bare: KernelConfig = "coopmat".parse().unwrap();
        assert_eq!(
            (bare.wg, bare.wgy, bare.to_string()),
            (0, 0, "coopmat".into())
        );
        assert_eq!(
            "coopmat(tile=8,acc=16)"
                .parse::<KernelConfig>()
                .unwrap()
                .to_string(),
            "coopmat(tile=8,acc=16,bm=128,bn=64,wm=32,wn=32,bk=32,stages=1)"
        );
    }

    #[test]
    fn an_invalid_configuration_names_the_valid_range() {
        let err = "direct(wg=0)".parse::<KernelConfig>().unwrap_err();
        assert!(err.contains("wg = 1..=256"), "{err}");
        let help = Kernel::help_list();
        for k in Kernel::ALL {
            assert!(
                help.contains(k.name()) && help.contains(k.description()),
                "{k}"
            );
        }
        assert!(help.contains("splitk(splits=4)"), "{help}");
    }
}

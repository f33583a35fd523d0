//! A kernel configuration as users and the tuning cache name it: a variant and the raw values
//! of its parameters, parsed from and displayed as `direct(wg=32)`, `regtile(wgx=8,wgy=16)`,
//! `splitk(splits=8)`, by one parser and one printer that read each variant's parameter list
//! ([`VariantDef::params`](super::VariantDef::params)). It is checked by the variant and resolved once into a
//! [`KernelSpec`](super::KernelSpec), whose typed [`Variant`](super::Variant) is what the
//! rest of the crate reads.

pub use super::block::CoopBlock;
use super::registry::Kernel;
use std::fmt;
use std::str::FromStr;

/// A kernel variant with the raw values of its parameters, as named on the command line and
/// stored in the tuning cache. Which parameter lives in which field is the variant's
/// ([`VariantDef::params`](super::VariantDef::params)): `wg` holds the first (`wg`, `wgx`, `splits` or `tile`), `wgy`
/// the second (`regtile`'s `wgy`, `coopmat`'s `acc`), `block` `coopmat`'s block; fields a
/// variant does not use are 0. Resolve it with [`KernelSpec::new`](super::KernelSpec::new)
/// to read them typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelConfig {
    /// The variant.
    pub kernel: Kernel,
    /// First parameter: invocations per workgroup (`direct`, `subgroup`, `texture`,
    /// `subgroup-texture`), invocations along columns (`regtile`'s `wgx`), the number of
    /// d_model ranges (`splitk`'s `splits`), or the cooperative matrices' size (`coopmat`'s
    /// `tile`: 8 or 16).
    pub wg: u32,
    /// Second parameter: invocations along token rows (`regtile`'s `wgy`), or the
    /// accumulator's bits (`coopmat`'s `acc`: 32 or 16); 0 otherwise.
    pub wgy: u32,
    /// `coopmat`'s block (all 0 for every other variant, and for a bare `coopmat`, whose
    /// tile and block come from the adapter).
    pub block: CoopBlock,
}

/// Where a parameter's raw value lives in a [`KernelConfig`] (the form the tuning cache and
/// the command line name), so that one parser and one printer serve every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// [`KernelConfig::wg`].
    First,
    /// [`KernelConfig::wgy`].
    Second,
    /// `coopmat`'s block: [`CoopBlock::bm`].
    Bm,
    /// [`CoopBlock::bn`].
    Bn,
    /// [`CoopBlock::wm`].
    Wm,
    /// [`CoopBlock::wn`].
    Wn,
    /// [`CoopBlock::bk`].
    Bk,
    /// [`CoopBlock::stages`].
    Stages,
}

/// One tuning parameter of a variant, as written in `name(param=value,...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Its name on the command line.
    pub name: &'static str,
    /// Where its value is kept.
    pub slot: Slot,
}

impl From<Kernel> for KernelConfig {
    fn from(kernel: Kernel) -> Self {
        KernelConfig::default_for(kernel)
    }
}

impl KernelConfig {
    /// A variant with its two first parameters (`block` all 0).
    pub const fn new(kernel: Kernel, wg: u32, wgy: u32) -> Self {
        Self {
            kernel,
            wg,
            wgy,
            block: CoopBlock::NONE,
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
    pub fn default_for(kernel: Kernel) -> Self {
        kernel.def().default_config()
    }

    /// The raw value in `slot`.
    pub fn slot(&self, slot: Slot) -> u32 {
        let b = &self.block;
        match slot {
            Slot::First => self.wg,
            Slot::Second => self.wgy,
            Slot::Bm => b.bm,
            Slot::Bn => b.bn,
            Slot::Wm => b.wm,
            Slot::Wn => b.wn,
            Slot::Bk => b.bk,
            Slot::Stages => b.stages,
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut u32 {
        let b = &mut self.block;
        match slot {
            Slot::First => &mut self.wg,
            Slot::Second => &mut self.wgy,
            Slot::Bm => &mut b.bm,
            Slot::Bn => &mut b.bn,
            Slot::Wm => &mut b.wm,
            Slot::Wn => &mut b.wn,
            Slot::Bk => &mut b.bk,
            Slot::Stages => &mut b.stages,
        }
    }

    /// Whether the fields the variant does not use are all 0.
    fn unused_slots_clear(&self, params: &[Param]) -> bool {
        const SLOTS: [Slot; 8] = [
            Slot::First,
            Slot::Second,
            Slot::Bm,
            Slot::Bn,
            Slot::Wm,
            Slot::Wn,
            Slot::Bk,
            Slot::Stages,
        ];
        SLOTS
            .into_iter()
            .filter(|s| !params.iter().any(|p| p.slot == *s))
            .all(|s| self.slot(s) == 0)
    }

    /// Checks the parameters against what the variant's shader supports.
    pub fn check(&self) -> Result<(), String> {
        let def = self.kernel.def();
        if self.unused_slots_clear(def.params()) && def.valid(self) {
            return Ok(());
        }
        Err(format!(
            "{self} is not a valid configuration of {} ({})",
            self.kernel,
            valid_values(def.ranges())
        ))
    }
}

/// "valid: <ranges>", or that the variant takes none.
fn valid_values(ranges: &str) -> String {
    match ranges {
        "" => "it takes no parameters".to_string(),
        r => format!("valid: {r}"),
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
    /// ranges of its parameters, one per line: what `--kernel`'s help lists.
    pub fn help_list() -> String {
        Kernel::ALL
            .iter()
            .map(|&k| {
                let knobs = match k.def().ranges() {
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
        let kernel: Kernel = name.trim().parse()?;
        let def = kernel.def();
        let mut config = KernelConfig::default_for(kernel);
        for kv in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| format!("'{kv}': expected key=value"))?;
            let key = key.trim();
            let value: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("'{kv}': {} is not a whole number", value.trim()))?;
            let Some(param) = def.params().iter().find(|p| p.name == key) else {
                return Err(format!(
                    "{s} is not a valid configuration of {kernel}: it has no parameter '{key}' \
                     ({})",
                    valid_values(def.ranges())
                ));
            };
            *config.slot_mut(param.slot) = value;
        }
        def.complete(&mut config);
        config.check()?;
        Ok(config)
    }
}

impl fmt::Display for KernelConfig {
    /// `name(param=value,...)` in the variant's order; the bare name for a variant without
    /// parameters or with all of them 0 (a bare `coopmat`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params = self.kernel.def().params();
        f.write_str(self.kernel.name())?;
        if params.iter().all(|p| self.slot(p.slot) == 0) {
            return Ok(());
        }
        let values: Vec<String> = params
            .iter()
            .map(|p| format!("{}={}", p.name, self.slot(p.slot)))
            .collect();
        write!(f, "({})", values.join(","))
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

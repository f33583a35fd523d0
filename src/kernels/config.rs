//! A kernel configuration as users and the tuning cache name it: a variant and the raw values
//! of its parameters, parsed from and displayed as `direct(wg=32)`, `regtile(wgx=8,wgy=16)`,
//! `splitk(splits=8)`, by one parser and one printer that read each variant's parameter names
//! ([`VariantDef::params`](super::VariantDef::params)). Value `i` is the variant's parameter
//! `i`, nothing else: a variant reads its values typed in its own module when it resolves
//! ([`VariantDef::resolve`](super::VariantDef::resolve)) into a
//! [`KernelSpec`](super::KernelSpec), which is what the rest of the crate reads.

use super::registry::Kernel;
use std::fmt;
use std::str::FromStr;

/// The most parameters a variant takes (`coopmat`'s eight).
pub const MAX_PARAMS: usize = 8;

/// A kernel variant with the raw values of its parameters, as named on the command line and
/// stored in the tuning cache: value `i` is parameter `i` of the variant's list
/// ([`VariantDef::params`](super::VariantDef::params)), written as the user writes it
/// (`coopmat`'s `acc=32` is 32); values past the list are 0. Resolve it with
/// [`KernelSpec::new`](super::KernelSpec::new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelConfig {
    /// The variant.
    pub kernel: Kernel,
    /// The parameters' values, in the variant's order.
    values: [u32; MAX_PARAMS],
}

impl From<Kernel> for KernelConfig {
    fn from(kernel: Kernel) -> Self {
        KernelConfig::default_for(kernel)
    }
}

impl KernelConfig {
    /// `kernel` with `values` for its parameters in the order of its list
    /// ([`VariantDef::params`](super::VariantDef::params)); at most [`MAX_PARAMS`]. A list
    /// of the wrong length is caught by [`check`](Self::check).
    pub const fn new(kernel: Kernel, values: &[u32]) -> Self {
        let mut all = [0; MAX_PARAMS];
        let mut i = 0;
        while i < values.len() {
            all[i] = values[i];
            i += 1;
        }
        Self {
            kernel,
            values: all,
        }
    }

    /// The configuration a variant runs with when none was tuned.
    pub fn default_for(kernel: Kernel) -> Self {
        kernel.def().default_config()
    }

    /// The values of the variant's parameters, in its order.
    pub fn values(&self) -> &[u32] {
        &self.values[..self.kernel.def().params().len().min(MAX_PARAMS)]
    }

    /// The value of parameter `i` of the variant's list (0 past it).
    pub const fn value(&self, i: usize) -> u32 {
        if i < MAX_PARAMS {
            self.values[i]
        } else {
            0
        }
    }

    /// The value of the parameter named `name`, if the variant has one.
    pub fn get(&self, name: &str) -> Option<u32> {
        let i = self.kernel.def().params().iter().position(|p| *p == name)?;
        Some(self.values[i])
    }

    /// Sets parameter `i` (a variant filling in what a partial configuration implies).
    pub fn set(&mut self, i: usize, value: u32) {
        self.values[i] = value;
    }

    /// Checks the parameters against what the variant's shader supports.
    pub fn check(&self) -> Result<(), String> {
        let def = self.kernel.def();
        let unused_clear = self.values[def.params().len().min(MAX_PARAMS)..]
            .iter()
            .all(|&v| v == 0);
        if unused_clear && def.valid(self) {
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
            let Some(i) = def.params().iter().position(|p| *p == key) else {
                return Err(format!(
                    "{s} is not a valid configuration of {kernel}: it has no parameter '{key}' \
                     ({})",
                    valid_values(def.ranges())
                ));
            };
            config.values[i] = value;
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
        if self.values.iter().all(|&v| v == 0) {
            return Ok(());
        }
        let values: Vec<String> = params
            .iter()
            .zip(self.values)
            .map(|(name, v)| format!("{name}={v}"))
            .collect();
        write!(f, "({})", values.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{CoopBlock, CoopParams};

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
        assert_eq!(c[1].values(), &[32]);
        assert_eq!(c[1].to_string(), "direct(wg=32)");
        assert_eq!(c[1].to_string().parse::<KernelConfig>(), Ok(c[1]));
        assert_eq!(c[2], KernelConfig::from(Kernel::Direct));
        assert!("direct(wg=999)".parse::<KernelConfig>().is_err());
        assert!("direct(rows=2)".parse::<KernelConfig>().is_err());
        assert!("direct(wgy=4)".parse::<KernelConfig>().is_err());
        let r: KernelConfig = "regtile(wgx=8,wgy=16)".parse().unwrap();
        assert_eq!((r.values(), r.workgroup_tile()), (&[8, 16][..], (32, 64)));
        assert_eq!((r.get("wgy"), r.get("wg")), (Some(16), None));
        assert_eq!(r.to_string().parse::<KernelConfig>(), Ok(r));
        assert!("naive(wg=2)".parse::<KernelConfig>().is_err());
        let k: KernelConfig = "splitk(splits=8)".parse().unwrap();
        assert_eq!(
            (k.value(0), k.to_string()),
            (8, "splitk(splits=8)".to_string())
        );
        assert_eq!(k.to_string().parse::<KernelConfig>(), Ok(k));
        assert!("splitk(splits=0)".parse::<KernelConfig>().is_err());
        assert!("direct(wg=8".parse::<KernelConfig>().is_err());
        let c: KernelConfig = "coopmat(tile=16)".parse().unwrap();
        assert_eq!(
            c,
            KernelConfig::coopmat(16, true, CoopBlock::default_for(16))
        );
        assert_eq!(
            c.to_string(),
            "coopmat(tile=16,acc=32,bm=128,bn=128,wm=64,wn=32,bk=32,stages=2)"
        );
        assert_eq!(c.to_string().parse::<KernelConfig>(), Ok(c));
        let w: KernelConfig = "coopmat(tile=16,bn=256,wn=64,stages=1)".parse().unwrap();
        let wb = CoopParams::of(&w).unwrap().block;
        assert_eq!((wb.bn, wb.wn, wb.subgroups()), (256, 64, 8));
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
            (bare.values(), bare.to_string()),
            (&[0; 8][..], "coopmat".into())
        );
        assert_eq!(CoopParams::of(&bare), None);
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

//! What a front end asks to run, `auto` or named kernel configurations ([`KernelChoice`],
//! parsed once from the user's words), and the specs it resolves to on a shape
//! ([`Resolved`], made by [`super::resolve`]).

use crate::kernels::{Kernel, KernelConfig, KernelSpec};

/// What a front end asks to run: the configuration the tuner chooses, or the ones named
/// (`qkv`'s `--kernel`, the Python module's `kernel=`).
#[derive(Debug, Clone, PartialEq)]
pub enum KernelChoice {
    /// The configuration autotuned for the adapter and shape class ([`super::choose`]).
    Auto,
    /// Exactly these; with `all`, every variant, those the adapter cannot run skipped.
    Named {
        /// The configurations, in order.
        configs: Vec<KernelConfig>,
        /// They are every variant (`all`): one the adapter cannot run is skipped, not an
        /// error.
        all: bool,
    },
}

impl KernelChoice {
    /// `auto`, or kernel configurations by name or number separated by `,` or `;` (outside
    /// parentheses), or `all` ([`Kernel::parse_list`]).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            other => Kernel::parse_list(other)
                .map(|configs| Self::Named {
                    configs,
                    all: other == "all",
                })
                // The list's own words, beside the kernel names the parser knows.
                .map_err(|e| format!("{e}, or 'auto' (autotuned: the default)")),
        }
    }
}

/// The specs a [`KernelChoice`] runs on one shape ([`super::resolve`]).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Each spec, resolved for the storage type and adapter, with why it runs ("named with
    /// `kernel`", or the tuner's reason).
    pub specs: Vec<(KernelSpec, String)>,
    /// The tuner's notes, where it chose ([`super::Choice::notes`]).
    pub notes: Vec<String>,
    /// With `all`, each variant the adapter cannot run, as it would have run, and why.
    pub skipped: Vec<(KernelConfig, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_choice_is_auto_or_named_configurations() {
        assert_eq!(KernelChoice::parse(" auto "), Ok(KernelChoice::Auto));
        let named = KernelChoice::parse("naive, direct(wg=32)").unwrap();
        let KernelChoice::Named { configs, all } = named else {
            panic!("named: {named:?}")
        };
        assert!(!all);
        let shown: Vec<String> = configs.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, ["naive", "direct(wg=32)"]);
        let every = KernelChoice::parse("all").unwrap();
        assert!(
            matches!(every, KernelChoice::Named { all: true, .. }),
            "{every:?}"
        );
        let err = KernelChoice::parse("bogus").unwrap_err();
        assert!(err.contains("bogus") && err.ends_with("or 'auto' (autotuned: the default)"));
    }
}

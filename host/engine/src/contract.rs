//! Which version of the `synchro:plugin` WIT package a component was built against, and
//! whether this host speaks it.
//!
//! Components name the package version in every import and export
//! (`synchro:plugin/collector@0.2.0`). Within a `0.MINOR` series versions are compatible
//! (new items only), and wasmtime links a `0.2.3` import to the host's `0.2.0` definition;
//! across series they are not. A host that adds `0.3` adds a variant here and its bindings
//! beside `bindings` (one `bindgen!` per version), and `Prepared` dispatches on it: both
//! generations then run side by side.

use std::fmt;

const PACKAGE: &str = "synchro:plugin";

/// A `synchro:plugin` series this host implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `synchro:plugin@0.2.x`. (0.1 identified entities by key alone; its `store` cannot
    /// be linked to a model identified by kind and key, so its components are refused by
    /// name and rebuilt against 0.2.)
    V0_2,
}

impl Contract {
    pub const SUPPORTED: &[Contract] = &[Contract::V0_2];

    /// The series a version belongs to, if this host supports it.
    fn of(version: &str) -> Option<Contract> {
        let mut parts = version.split('.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("0"), Some("2"), Some(patch)) if patch.parse::<u32>().is_ok() => {
                Some(Contract::V0_2)
            }
            _ => None,
        }
    }

    /// The contract of a component, from the names of its imports and exports: every
    /// `synchro:plugin` name must carry a version of one supported series.
    pub fn of_component<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Contract, String> {
        let mut found = None;
        for name in names {
            let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let Some((_, version)) = rest.split_once('@') else {
                return Err(format!(
                    "it uses `{name}` without a version; this host supports {}",
                    Supported
                ));
            };
            let Some(contract) = Contract::of(version) else {
                return Err(format!(
                    "it was built against {PACKAGE}@{version} (`{name}`); this host supports {}",
                    Supported
                ));
            };
            // With a second series, mixing two would be refused here.
            found = Some(contract);
        }
        found.ok_or_else(|| {
            format!("it neither imports nor exports anything of {PACKAGE}; this host supports {Supported}")
        })
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contract::V0_2 => write!(f, "{PACKAGE}@0.2.x"),
        }
    }
}

/// The list of supported series, for messages.
struct Supported;

impl fmt::Display for Supported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = Contract::SUPPORTED.iter().map(|c| c.to_string()).collect();
        f.write_str(&names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_versions_of_the_series_are_accepted_and_others_named() {
        let ok = [
            "wasi:io/streams@0.2.0",
            "synchro:plugin/log@0.2.7",
            "synchro:plugin/collector@0.2.0",
        ];
        assert_eq!(Contract::of_component(ok), Ok(Contract::V0_2));
        assert_eq!(
            Contract::of_component(["synchro:plugin/collector@0.1.0"]),
            Err("it was built against synchro:plugin@0.1.0 (`synchro:plugin/collector@0.1.0`); this host supports synchro:plugin@0.2.x".into())
        );
        assert_eq!(
            Contract::of_component(["synchro:plugin/collector@1.1.0"]).unwrap_err(),
            "it was built against synchro:plugin@1.1.0 (`synchro:plugin/collector@1.1.0`); this host supports synchro:plugin@0.2.x"
        );
        assert!(
            Contract::of_component(["synchro:plugin/collector"])
                .unwrap_err()
                .contains("without a version")
        );
        assert!(
            Contract::of_component(["wasi:cli/run@0.2.0"])
                .unwrap_err()
                .contains("neither imports nor exports")
        );
    }
}

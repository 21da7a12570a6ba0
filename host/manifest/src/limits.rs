//! The limits of a plugin's calls, defined once: the host config's `[limits]` are the
//! defaults, a manifest's `[limits]` asks for other values, the host config's
//! `[ceilings]` hold what any manifest may ask, and [`Limits::resolve`] combines the three.
//!
//! Every field is listed once, in the `limits!` invocation below; the layered type
//! ([`LimitOverrides`]: each field optional) and the resolution follow from that list, so
//! a new limit cannot be forgotten in one of the layers.

use std::fmt::Debug;
use std::time::Duration;

use serde::Deserialize;

/// The longest duration a limit may be: long enough for any real deadline or backoff,
/// short enough that adding it to the clock can never overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A value that a ceiling can hold down.
pub trait Limit: Copy + Debug {
    /// Whether `self` asks for more than `ceiling` allows.
    fn exceeds(&self, ceiling: &Self) -> bool;

    /// Whether this is "no limit at all", which a ceiling is meant to bound.
    fn is_unbounded(&self) -> bool {
        false
    }

    /// The value as a count, for the bounds every count has.
    fn count(&self) -> Option<u64> {
        None
    }

    /// The value as a duration, for the bounds every duration has.
    fn duration(&self) -> Option<Duration> {
        None
    }

    /// The value as messages write it.
    fn show(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fmt(f)
    }
}

impl Limit for Duration {
    fn exceeds(&self, ceiling: &Self) -> bool {
        self > ceiling
    }

    fn duration(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl Limit for u64 {
    fn exceeds(&self, ceiling: &Self) -> bool {
        self > ceiling
    }

    fn count(&self) -> Option<u64> {
        Some(*self)
    }
}

impl Limit for u32 {
    fn exceeds(&self, ceiling: &Self) -> bool {
        self > ceiling
    }

    fn count(&self) -> Option<u64> {
        Some(u64::from(*self))
    }
}

/// An optional budget: `None` is no budget, which exceeds any ceiling.
impl Limit for Option<u64> {
    fn exceeds(&self, ceiling: &Self) -> bool {
        match (self, ceiling) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(value), Some(ceiling)) => value > ceiling,
        }
    }

    fn is_unbounded(&self) -> bool {
        self.is_none()
    }

    fn count(&self) -> Option<u64> {
        *self
    }

    fn show(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            None => f.write_str("no budget"),
            Some(value) => write!(f, "{value}"),
        }
    }
}

macro_rules! limits {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $default:expr, $key:literal $(, with $with:literal)?;
    )*) => {
        /// The limits every call of one plugin runs under.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
        pub struct Limits {
            $(
                $(#[doc = $doc])*
                $(#[serde(with = $with)])?
                pub $field: $ty,
            )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $($field: $default,)* }
            }
        }

        /// The fields of [`Limits`], each optional: what a manifest's `[limits]` asks
        /// for, or what the operator's `[ceilings]` allow at most.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct LimitOverrides {
            $(
                $(#[doc = $doc])*
                #[serde(default $(, with = $with)?)]
                pub $field: Option<$ty>,
            )*
        }

        impl Limits {
            /// What `asked` asks for, the rest from these defaults, each value held to
            /// its `ceilings`; `held` is told of each value held down (field, asked,
            /// ceiling).
            pub fn resolve(
                &self,
                asked: &LimitOverrides,
                ceilings: &LimitOverrides,
                mut held: impl FnMut(&str, &dyn Debug, &dyn Debug),
            ) -> Limits {
                Limits {
                    $($field: {
                        let value = asked.$field.unwrap_or(self.$field);
                        match ceilings.$field {
                            Some(ceiling) if value.exceeds(&ceiling) => {
                                held($key, &Shown(value), &Shown(ceiling));
                                ceiling
                            }
                            _ => value,
                        }
                    },)*
                }
            }

            /// Checks that no ceiling is below its default: the default would then be
            /// silently held for every plugin. Errors start with the ceiling's field.
            pub fn check_ceilings(&self, ceilings: &LimitOverrides) -> Result<(), String> {
                $(
                    if let Some(ceiling) = ceilings.$field
                        && !self.$field.is_unbounded()
                        && self.$field.exceeds(&ceiling)
                    {
                        return Err(format!(
                            "{}` = {:?} is below the default `limits.{}` = {:?}; lower the default too",
                            $key, Shown(ceiling), $key, Shown(self.$field)
                        ));
                    }
                )*
                Ok(())
            }
        }

        impl LimitOverrides {
            /// Checks each value that is set; errors start with the field's name.
            pub fn check(&self) -> Result<(), String> {
                $(
                    if let Some(value) = self.$field {
                        check_field($key, &value)?;
                    }
                )*
                Ok(())
            }
        }

        impl Limits {
            /// Checks every value; errors start with the field's name.
            pub fn check(&self) -> Result<(), String> {
                $(check_field($key, &self.$field)?;)*
                Ok(())
            }
        }
    };
}

limits! {
    /// Wall-clock deadline of one plugin call.
    deadline: Duration = Duration::from_secs(30), "deadline", with "humantime_serde";
    /// Linear memory a plugin instance may grow to, in MiB.
    memory_mb: u64 = 256, "memory-mb";
    /// Entities one snapshot may have.
    max_entities: u64 = 10_000_000, "max-entities";
    /// KiB (of keys, kinds and properties) one snapshot may have.
    max_snapshot_kb: u64 = 4 << 20, "max-snapshot-kb";
    /// KiB one published message (payload, key and headers) may have.
    max_message_kb: u64 = 1024, "max-message-kb";
    /// Fuel (roughly, wasm instructions) one call may burn; needs a host with
    /// `fuel-metering = true`. Unset: no budget.
    fuel: Option<u64> = None, "fuel";
    /// Consecutive failed calls after which a plugin is quarantined.
    quarantine_after: u32 = 10, "quarantine-after";
    /// The longest pause between attempts of a failing plugin.
    max_backoff: Duration = Duration::from_secs(300), "max-backoff", with "humantime_serde";
    /// Deletes one collect may make; past it, they are held for an operator to approve
    /// (Entra Connect's default threshold).
    max_deletes: u64 = 500, "max-deletes";
    /// Percent of its baseline one collect may delete; past it, the deletes are held.
    /// The default holds an empty snapshot after a full one.
    max_delete_percent: u64 = 50, "max-delete-percent";
    /// Consecutive complete snapshots an entity must be absent from before it is
    /// deleted: above 1, a source that drops an entity now and then does not make a
    /// DELETE and a CREATE of it each time.
    delete_after_absent: u32 = 1, "delete-after-absent";
}

impl Limits {
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb << 20) as usize
    }

    pub fn max_snapshot_bytes(&self) -> u64 {
        self.max_snapshot_kb << 10
    }

    pub fn max_message_bytes(&self) -> usize {
        (self.max_message_kb << 10) as usize
    }
}

/// A limit's value as messages write it.
struct Shown<T>(T);

impl<T: Limit> Debug for Shown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.show(f)
    }
}

/// Each field's bounds: nothing zero that would make every call fail, nothing so large
/// that converting it to bytes or adding it to the clock overflows.
fn check_field(key: &str, value: &impl Limit) -> Result<(), String> {
    let fail = |why: String| Err(format!("{key}`: {why}"));
    if let Some(duration) = value.duration() {
        if duration.is_zero() {
            return fail("must be longer than zero".into());
        }
        if duration > MAX_DURATION {
            return fail("must be at most a year".into());
        }
    }
    let most = match key {
        "memory-mb" => 1 << 16,
        "max-snapshot-kb" | "max-message-kb" => 1 << 32,
        "max-delete-percent" => 100,
        _ => u64::MAX,
    };
    match value.count() {
        Some(0) => fail("must be at least 1".into()),
        Some(count) if count > most => fail(format!("must be at most {most}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(text: &str) -> LimitOverrides {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_manifest_overrides_defaults_and_a_ceiling_holds_it() {
        let defaults = Limits::default();
        let asked = overrides("memory-mb = 512\ndeadline = \"2s\"");
        let ceilings = overrides("memory-mb = 300\nfuel = 1000");
        let mut held = Vec::new();
        let limits = defaults.resolve(&asked, &ceilings, |field, value, ceiling| {
            held.push(format!("{field} {value:?} {ceiling:?}"))
        });
        assert_eq!(limits.memory_mb, 300);
        assert_eq!(limits.deadline, Duration::from_secs(2));
        assert_eq!(limits.fuel, Some(1000), "no budget is held to the ceiling");
        assert_eq!(limits.max_entities, defaults.max_entities);
        assert_eq!(held, ["memory-mb 512 300", "fuel no budget 1000"]);
    }

    #[test]
    fn zero_and_overflowing_values_are_named() {
        let cases = [
            ("deadline = \"0s\"", "deadline`: must be longer than zero"),
            (
                "max-backoff = \"400years\"",
                "max-backoff`: must be at most a year",
            ),
            ("memory-mb = 0", "memory-mb`: must be at least 1"),
            (
                "memory-mb = 99999999999999",
                "memory-mb`: must be at most 65536",
            ),
            (
                "quarantine-after = 0",
                "quarantine-after`: must be at least 1",
            ),
            ("fuel = 0", "fuel`: must be at least 1"),
        ];
        for (text, expected) in cases {
            assert_eq!(overrides(text).check().unwrap_err(), expected, "{text}");
        }
        assert!(Limits::default().check().is_ok());
    }

    #[test]
    fn a_ceiling_below_a_default_is_refused() {
        let error = Limits::default()
            .check_ceilings(&overrides("memory-mb = 16"))
            .unwrap_err();
        assert_eq!(
            error,
            "memory-mb` = 16 is below the default `limits.memory-mb` = 256; lower the default too"
        );
        assert!(
            Limits::default()
                .check_ceilings(&overrides("fuel = 10\nmemory-mb = 256"))
                .is_ok(),
            "a budget ceiling over an unbudgeted default holds it"
        );
    }
}

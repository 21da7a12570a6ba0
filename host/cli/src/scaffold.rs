//! `synchro plugin new`: a plugin folder that builds, loads and runs as generated.
//!
//! The sources are templates under `scaffold/`, one folder per language, with `{name}` (and,
//! in `Cargo.toml`, the SDK's version and where to find it) filled in; the manifest is
//! written here, since what it says depends on the role.

use std::path::{Path, PathBuf};

use anyhow::Context;
use synchro_manifest::Role;

/// The languages `plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::C => "C",
        }
    }

    /// The file a plugin's build starts from.
    pub fn source(self) -> &'static str {
        match self {
            Lang::Rust => "src/lib.rs",
            Lang::Python => "app.py",
            Lang::Js => "app.js",
            Lang::C => "app.c",
        }
    }
}

/// The Rust SDK this binary was built with: a scaffold depends on this version.
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Writes a new plugin `name` of `role` in `lang` into the directory `dir/name`, which
/// must not exist yet; returns that directory.
pub fn new(dir: &Path, name: &str, lang: Lang, role: Role) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    anyhow::ensure!(
        !root.exists(),
        "{} already exists; plugin new writes a new folder",
        root.display()
    );
    let patch = sdk_patch();
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{role}", role.name())
            .replace("{sdk_version}", SDK_VERSION)
            .replace("{sdk_patch}", &patch)
    };
    let mut files = templates(lang, role);
    for (_, content) in &mut files {
        *content = fill(content);
    }
    files.push((format!("{name}.toml"), manifest(name, role)));
    // What `synchro plugin test` runs it against.
    let (fixture, cases) = match role {
        Role::Collector => ("items", include_str!("scaffold/collector_fixture.toml")),
        Role::EventStep => ("changes", include_str!("scaffold/event_step_fixture.toml")),
        Role::ModelPolicy => ("calls", include_str!("scaffold/model_policy_fixture.toml")),
        Role::SyncStep => ("calls", include_str!("scaffold/sync_step_fixture.toml")),
    };
    files.push((format!("fixtures/{fixture}.toml"), cases.to_owned()));
    for (path, content) in files {
        let path = root.join(path);
        let parent = path.parent().expect("files are inside the folder");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

/// A plugin's name is its package's, its manifest's and its component's: lowercase
/// letters, digits and `-`, starting with a letter, as crates, files and the host take it.
fn check_name(name: &str) -> anyhow::Result<()> {
    let fits = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    anyhow::ensure!(
        fits,
        "`{name}` cannot name a plugin: use lowercase letters, digits and `-` (at most 64, \
         starting with a letter), e.g. `inventory-collector`"
    );
    anyhow::ensure!(
        name != "api",
        "`api` is the owner name of what operators write through the admin API; choose another"
    );
    Ok(())
}

/// The templates of a plugin of `role` in `lang`, by path: its source, its README, its
/// `.gitignore` (and a Rust crate's `Cargo.toml`), from `scaffold/LANG/`.
fn templates(lang: Lang, role: Role) -> Vec<(String, String)> {
    /// The source of `role` in the folder `$lang`, whose files end in `$ext`.
    macro_rules! source {
        ($lang:literal, $ext:literal) => {
            match role {
                Role::Collector => include_str!(concat!("scaffold/", $lang, "/collector.", $ext)),
                Role::EventStep => include_str!(concat!("scaffold/", $lang, "/event_step.", $ext)),
                Role::ModelPolicy => {
                    include_str!(concat!("scaffold/", $lang, "/model_policy.", $ext))
                }
                Role::SyncStep => include_str!(concat!("scaffold/", $lang, "/sync_step.", $ext)),
            }
        };
    }
    /// The files every language has, from the folder `$lang`.
    macro_rules! common {
        ($lang:literal) => {
            [
                (
                    "README.md",
                    include_str!(concat!("scaffold/", $lang, "/README.md.in")),
                ),
                (
                    ".gitignore",
                    include_str!(concat!("scaffold/", $lang, "/gitignore")),
                ),
            ]
        };
    }
    let files: Vec<(&str, &str)> = match lang {
        Lang::Rust => [
            ("Cargo.toml", include_str!("scaffold/rust/Cargo.toml.in")),
            (lang.source(), source!("rust", "rs")),
        ]
        .into_iter()
        .chain(common!("rust"))
        .collect(),
        Lang::Python => [(lang.source(), source!("python", "py"))]
            .into_iter()
            .chain(common!("python"))
            .collect(),
        Lang::Js => [(lang.source(), source!("js", "js"))]
            .into_iter()
            .chain(common!("js"))
            .collect(),
        Lang::C => [(lang.source(), source!("c", "c"))]
            .into_iter()
            .chain(common!("c"))
            .collect(),
    };
    files
        .into_iter()
        .map(|(path, text)| (path.to_owned(), text.to_owned()))
        .collect()
}

/// `synchro-guest` is not on crates.io yet: where this binary was built from a checkout
/// that still has its SDK, the scaffold takes it from there, in a `[patch]` that goes
/// once it is published.
fn sdk_patch() -> String {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk");
    match checkout.canonicalize() {
        Ok(sdk) if sdk.join("Cargo.toml").is_file() => format!(
            "\n# The SDK of the synchro checkout this was generated with, until synchro-guest\n\
             # is on crates.io.\n[patch.crates-io]\nsynchro-guest = {{ path = {:?} }}\n",
            sdk.display().to_string()
        ),
        _ => String::new(),
    }
}

/// The manifest of a new plugin: its role's section with what it needs to run as
/// generated, and the capabilities that asks for.
fn manifest(name: &str, role: Role) -> String {
    let section = match role {
        Role::Collector => "[schedule]\n\
             # How often the host calls `collect`.\n\
             interval = \"30s\"\n\n\
             [settings]\n\
             items = 3\n"
            .to_owned(),
        Role::EventStep => "[events]\n\
             # The bus topics it consumes: `changes` is the host's change stream.\n\
             topics = [\"changes\"]\n\
             start = \"earliest\"\n"
            .to_owned(),
        Role::ModelPolicy => "[policy]\n\
             # The kinds of model entities it handles.\n\
             kinds = [\"example\"]\n\n\
             [capabilities]\n\
             store = { read = [\"example\"] }\n"
            .to_owned(),
        Role::SyncStep => "[sync]\n\
             # The kinds of model entities it pushes outward.\n\
             kinds = [\"example\"]\n\n\
             [capabilities]\n\
             store = { read = [\"example\"] }\n"
            .to_owned(),
    };
    format!(
        "name = \"{name}\"\n\
         version = \"0.1.0\"\n\
         roles = [\"{role}\"]\n\
         # The component, built by `synchro plugin build . -o {name}.wasm`.\n\
         component = \"{name}.wasm\"\n\n\
         {section}",
        role = role.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_those_a_crate_a_file_and_the_host_take() {
        for good in ["inv", "inventory-collector", "a1"] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "Inv",
            "1inv",
            "inv-",
            "in v",
            "in_v",
            "../x",
            "api",
            &"a".repeat(65),
        ] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
    }

    #[test]
    fn every_role_gets_a_manifest_the_host_reads() {
        let dir = tempfile::tempdir().unwrap();
        for (lang, role) in <Lang as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .flat_map(|lang| Role::ALL.map(|role| (lang, role)))
        {
            let name = format!("new-{}-{}", lang.name().to_lowercase(), role.name());
            let root = new(dir.path(), &name, lang, role).unwrap();
            let manifest = root.join(format!("{name}.toml"));
            let read = synchro_manifest::Manifest::load(&manifest).unwrap();
            assert_eq!(
                (read.name.as_str(), read.roles.as_slice()),
                (name.as_str(), &[role][..])
            );
            assert_eq!(read.component, root.join(format!("{name}.wasm")));
            let source = std::fs::read_to_string(root.join(lang.source())).unwrap();
            assert!(!source.contains("{name}"), "{source}");
            let error = new(dir.path(), &name, lang, role).unwrap_err();
            assert!(error.to_string().contains("already exists"), "{error}");
        }
    }
}

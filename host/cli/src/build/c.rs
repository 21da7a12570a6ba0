//! A C plugin: `DIR/*.c`, with `DIR/app.c` defining its role's export
//! (`exports_synchro_plugin_collector_collect`, ...), compiled with clang for wasm32-wasi
//! and made a component with the WASI preview1 reactor adapter.
//!
//! The bindings are generated here from the WIT by wit-bindgen's C generator (a library
//! in this binary: nothing to install), under the world-neutral name `synchro` so that
//! `guest-sdk/c/synchro_guest.h` serves every role; the header and cJSON, vendored beside
//! it, are on the include path. clang and WASI's libc are Debian's packages, installed
//! when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use synchro_manifest::Role;
use wit_bindgen_core::wit_parser::Resolve;

use super::Guest;

/// Debian's clang for wasm32 (with its runtime and linker) and WASI's libc (TOOLCHAIN.md).
const PACKAGES: [&str; 4] = [
    "clang-22",
    "lld-22",
    "libclang-rt-22-dev-wasm32",
    "wasi-libc",
];
const CLANG: &str = "clang-22";

/// The C SDK: its header and the JSON library it uses, as `guest-sdk/c` holds them.
const SDK: [(&str, &str); 3] = [
    (
        "synchro_guest.h",
        include_str!("../../../../guest-sdk/c/synchro_guest.h"),
    ),
    (
        "cJSON.h",
        include_str!("../../../../guest-sdk/c/cjson/cJSON.h"),
    ),
    (
        "cJSON.c",
        include_str!("../../../../guest-sdk/c/cjson/cJSON.c"),
    ),
];

/// The name the bindings go by: `synchro.h`, `synchro_string_t`, ...
const BINDINGS: &str = "synchro";

/// Builds `dir/*.c` into `dir/target/NAME.wasm`, NAME being the folder's name.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let guest = Guest::new(dir, "app.c", defines)?;
    super::debian_packages(&PACKAGES, "C plugins")?;
    let include = guest.scratch.path().join("include");
    std::fs::create_dir_all(&include)?;
    bindings(&guest, &include)?;
    for (file, text) in SDK {
        std::fs::write(include.join(file), text)?;
    }
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&guest.dir)
        .with_context(|| format!("reading {}", guest.dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    sources.sort();
    let core = guest.scratch.path().join("core.wasm");
    eprintln!(
        "synchro: {CLANG}: {}/*.c as {}",
        guest.dir.display(),
        guest.world()
    );
    super::run(
        Command::new(CLANG)
            .args([
                "--target=wasm32-wasi",
                "--sysroot=/usr",
                "-O2",
                "-mexec-model=reactor",
            ])
            // Debian's WASI libc is laid out for the `wasm32-wasi` name clang calls deprecated.
            .args(["-fuse-ld=lld", "-Wall", "-Wno-deprecated"])
            .arg(format!(
                "-DSYNCHRO_ROLE_{}",
                guest.role.name().replace('-', "_").to_uppercase()
            ))
            .arg("-I")
            .arg(&include)
            .arg("-I")
            .arg(&guest.dir)
            .arg("-o")
            .arg(&core)
            .args(&sources)
            .arg(include.join(format!("{BINDINGS}.c")))
            .arg(include.join("cJSON.c"))
            .arg(include.join(format!("{BINDINGS}_component_type.o"))),
        "clang could not build the plugin",
    )?;
    let module = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
    let component = componentize(&module)?;
    let out = guest.output()?;
    std::fs::write(&out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// Whether `source` defines `role`'s export: `exports_synchro_plugin_collector_collect`
/// and its likes, named as wit-bindgen names them, after `bool` or at the start of a line
/// (the return type on the line before).
fn defines(source: &str, role: Role) -> bool {
    let prefix = format!("exports_synchro_plugin_{}_", role.name().replace('-', "_"));
    source.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with(&prefix)
            || line.strip_prefix("bool").is_some_and(|rest| {
                rest.starts_with(char::is_whitespace) && rest.trim_start().starts_with(&prefix)
            })
    })
}

/// Writes wit-bindgen's C bindings for the plugin's world into `include`: `synchro.h`,
/// `synchro.c` and the component type object.
fn bindings(guest: &Guest, include: &Path) -> anyhow::Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(guest.wit())
        .context("reading the WIT built into synchro")?;
    let world = resolve.select_world(&[package], Some(&guest.world()))?;
    let mut files = wit_bindgen_core::Files::default();
    let options = wit_bindgen_c::Opts {
        rename_world: Some(BINDINGS.to_owned()),
        ..Default::default()
    };
    options
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;
    for (name, bytes) in files.iter() {
        std::fs::write(include.join(name), bytes)?;
    }
    Ok(())
}

/// The core module `module` as a component: its WASI preview1 imports adapted to
/// preview2 by wasmtime's reactor adapter, its type from the bindings' custom section.
fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("reading the module clang built")?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("the WASI adapter")?
        .validate(true)
        .encode()
        .context("making the module a component")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_the_export_the_source_defines() {
        let app = "#include \"synchro_guest.h\"\n\n\
                   bool exports_synchro_plugin_collector_collect(\n\
                       exports_synchro_plugin_collector_completeness_t *ret, synchro_error_t *err) {\n";
        assert!(defines(app, Role::Collector));
        assert!(!defines(app, Role::SyncStep));
        assert!(defines(
            "bool exports_synchro_plugin_event_step_process_event(",
            Role::EventStep
        ));
        assert!(defines(
            "bool\nexports_synchro_plugin_sync_step_sync_record(synchro_entity_t *e,",
            Role::SyncStep
        ));
        // A call is not a definition.
        assert!(!defines(
            "  ok = exports_synchro_plugin_sync_step_sync_record(e, err);",
            Role::SyncStep
        ));
    }
}

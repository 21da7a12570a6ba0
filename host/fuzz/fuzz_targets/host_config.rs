//! Any text as a host config, and a manifest loaded under it (the two texts split at the
//! first NUL): an error naming the problem, never a panic. This reaches what the manifest
//! target does not: the role sections, the capabilities' grants and the operator's
//! narrowing of them.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (config, manifest) = text.split_once('\0').unwrap_or((text, ""));
    let Ok(config) = synchro_supervisor::Config::parse(Path::new("/etc/synchro.toml"), config)
    else {
        return;
    };
    let Ok(manifest) =
        synchro_manifest::Manifest::parse(Path::new("/plugins/fuzz.toml"), manifest)
    else {
        return;
    };
    let _ = synchro_roles::Declared::new(manifest, &config.load_policy());
});

//! Any text as a plugin manifest: an error naming the problem, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = synchro_manifest::Manifest::parse(std::path::Path::new("/plugins/fuzz.toml"), text);
});

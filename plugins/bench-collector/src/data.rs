//! The synthetic inventory of the collector benchmark. This one file is compiled into the
//! wasm plugin and into the host's native baseline, so both do exactly the same work.

/// Entities whose `revision` changes from one cycle to the next: one in a hundred.
pub const CHANGED_EVERY: u64 = 100;

/// Entity `i` as it is in `cycle`: `(key, kind, properties)`, with ~300 bytes of JSON
/// properties whose keys are already sorted (as a plugin mapping JSON would produce).
pub fn entity(i: u64, cycle: u64, out: &mut String) -> (String, &'static str) {
    use std::fmt::Write;
    out.clear();
    write!(
        out,
        r#"{{"cpu":{},"description":"synthetic server {i} used by the collector benchmark","hostname":"host-{i:06}.bench.example.net","ip":"10.{}.{}.{}","memory_gb":{},"os":"linux-6.1.0-{}","owner":"team-{}","rack":"rack-{:03}","revision":{},"status":"active","tags":["bench","synthetic","zone-{}"]}}"#,
        8 << (i % 4),
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255,
        64 << (i % 3),
        i % 17,
        i % 23,
        i % 997,
        revision(i, cycle),
        i % 5,
    )
    .expect("writing to a String cannot fail");
    (format!("srv-{i:08}"), "pserver")
}

/// How many cycles in `1..=cycle` changed entity `i`: each cycle changes exactly the
/// entities with `i % CHANGED_EVERY == cycle % CHANGED_EVERY`.
fn revision(i: u64, cycle: u64) -> u64 {
    let r = i % CHANGED_EVERY;
    let first = if r == 0 { CHANGED_EVERY } else { r };
    if cycle < first {
        0
    } else {
        (cycle - first) / CHANGED_EVERY + 1
    }
}

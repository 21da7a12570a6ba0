//! A guest's stdout and stderr, as lines of the host's log attributed to its plugin.
//!
//! Without them a plugin author debugs blind: a Python `KeyError`, a JavaScript
//! `TypeError` or a Rust panic prints its message to stderr and then traps, and the host
//! said only "wasm `unreachable` instruction executed". Each line is logged as the `log`
//! import's are — under the target `plugin`, with the plugin's name and the stream, on
//! one line of the host's log whatever it holds — and held to the same bounds: a number
//! of lines per call (the rest dropped and counted) and 4 KiB a line (the rest cut and
//! said so). Writes never block the guest and never fail.

use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi_io::bytes::Bytes;

/// Bytes of one line kept; the rest is cut and said so.
const LINE_BYTES: usize = 4096;

/// The output of one store's guest: its stdout and stderr share the budget of lines.
#[derive(Clone)]
pub struct GuestOutput(Arc<Mutex<Lines>>);

impl GuestOutput {
    /// The output of `plugin`, which logs up to `lines_per_call` lines in each call.
    pub fn new(plugin: Arc<str>, lines_per_call: u32) -> GuestOutput {
        GuestOutput(Arc::new(Mutex::new(Lines::new(plugin, lines_per_call))))
    }

    /// Ends a call: logs what is left of an unended line, says how many lines over the
    /// cap were dropped, and gives the next call its own budget.
    pub fn end_call(&self) {
        self.lock().end_call(&mut log);
    }

    fn lock(&self) -> MutexGuard<'_, Lines> {
        // A panic while logging leaves nothing half-done that matters.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the store's WASI context writes the guest's `stream` to.
    pub(crate) fn stream(&self, stream: Stream) -> impl StdoutStream + 'static {
        Writer {
            output: self.clone(),
            stream,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Logs `line` of `plugin`'s `stream`.
fn log(plugin: &str, stream: Stream, line: &str) {
    match stream {
        Stream::Stdout => {
            tracing::info!(target: "plugin", plugin = %plugin, stream = %"stdout", "{line}")
        }
        Stream::Stderr => {
            tracing::warn!(target: "plugin", plugin = %plugin, stream = %"stderr", "{line}")
        }
    }
}

/// What a line of the guest is done with.
type Sink<'s> = dyn FnMut(&str, Stream, &str) + 's;

struct Lines {
    plugin: Arc<str>,
    lines_per_call: u32,
    /// Lines of the current call, logged or dropped.
    lines: u32,
    stdout: Partial,
    stderr: Partial,
}

/// A line not ended yet: its first [`LINE_BYTES`] bytes, and how many more came.
#[derive(Default)]
struct Partial {
    kept: Vec<u8>,
    cut: usize,
}

impl Lines {
    fn new(plugin: Arc<str>, lines_per_call: u32) -> Lines {
        Lines {
            plugin,
            lines_per_call,
            lines: 0,
            stdout: Partial::default(),
            stderr: Partial::default(),
        }
    }

    fn write(&mut self, stream: Stream, mut bytes: &[u8], sink: &mut Sink<'_>) {
        while !bytes.is_empty() {
            let (part, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => (&bytes[..end], true),
                None => (bytes, false),
            };
            let partial = self.partial(stream);
            let room = LINE_BYTES
                .saturating_sub(partial.kept.len())
                .min(part.len());
            partial.kept.extend_from_slice(&part[..room]);
            partial.cut += part.len() - room;
            bytes = &bytes[part.len() + usize::from(ended)..];
            if ended {
                self.line(stream, sink);
            }
        }
    }

    fn partial(&mut self, stream: Stream) -> &mut Partial {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// Hands the line of `stream` to `sink`, if the call has lines left.
    fn line(&mut self, stream: Stream, sink: &mut Sink<'_>) {
        let Partial { kept, cut } = std::mem::take(self.partial(stream));
        self.lines = self.lines.saturating_add(1);
        if self.lines > self.lines_per_call {
            return;
        }
        let mut line = String::from_utf8_lossy(&kept).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        if cut > 0 {
            line.push_str(&format!("… [{cut} bytes cut]"));
        }
        sink(&self.plugin, stream, &line);
    }

    /// Ends a call; the lines dropped in it.
    fn end_call(&mut self, sink: &mut Sink<'_>) -> u32 {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let partial = self.partial(stream);
            if !partial.kept.is_empty() || partial.cut > 0 {
                self.line(stream, sink);
            }
        }
        let dropped = self.lines.saturating_sub(self.lines_per_call);
        if dropped > 0 {
            let plugin = &*self.plugin;
            tracing::warn!(
                plugin = %plugin,
                dropped,
                "stdout and stderr lines over the per-call cap were dropped"
            );
        }
        self.lines = 0;
        dropped
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.end_call(&mut log);
    }
}

/// One of the guest's streams.
struct Writer {
    output: GuestOutput,
    stream: Stream,
}

impl IsTerminal for Writer {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Writer {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(Writer {
            output: self.output.clone(),
            stream: self.stream,
        })
    }

    /// A `wasi:cli` 0.3 guest's stream, which this host does not link (the contract has
    /// no async functions): such output would go nowhere.
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

impl OutputStream for Writer {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.lock().write(self.stream, &bytes, &mut log);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Every write is taken at once, whatever its size.
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Writer {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Lines` makes of `chunks` in one call with `lines_per_call`: the lines, each
    /// `stream: text`, and how many were dropped.
    fn lines_of(lines_per_call: u32, chunks: &[(Stream, &[u8])]) -> (Vec<String>, u32) {
        let mut lines = Lines::new("p".into(), lines_per_call);
        let mut logged = Vec::new();
        let mut sink = |plugin: &str, stream: Stream, line: &str| {
            assert_eq!(plugin, "p");
            logged.push(format!("{stream:?}: {line}"));
        };
        for (stream, chunk) in chunks {
            lines.write(*stream, chunk, &mut sink);
        }
        let dropped = lines.end_call(&mut sink);
        (logged, dropped)
    }

    #[test]
    fn writes_become_lines_whatever_their_pieces() {
        let (lines, dropped) = lines_of(
            10,
            &[
                (Stream::Stdout, b"hel"),
                (Stream::Stderr, b"panicked at src/lib.rs:\r\n"),
                (Stream::Stdout, b"lo\nwor"),
                (Stream::Stdout, b"ld\n\nunended"),
                (Stream::Stderr, b"\xff bad utf-8"),
            ],
        );
        assert_eq!(
            lines,
            [
                "Stderr: panicked at src/lib.rs:",
                "Stdout: hello",
                "Stdout: world",
                "Stdout: ",
                "Stdout: unended",
                "Stderr: \u{fffd} bad utf-8",
            ]
        );
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_call_is_held_to_its_lines_and_a_line_to_its_bytes() {
        let long = vec![b'x'; LINE_BYTES + 100];
        let (lines, _) = lines_of(5, &[(Stream::Stdout, &long), (Stream::Stdout, b"y\n")]);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with("xxx… [101 bytes cut]"),
            "{}",
            &lines[0][lines[0].len() - 40..]
        );

        let flood = "line\n".repeat(1000);
        let (lines, dropped) = lines_of(5, &[(Stream::Stderr, flood.as_bytes())]);
        assert_eq!((lines.len(), dropped), (5, 995));

        // The next call has its budget again.
        let mut output = Lines::new("p".into(), 1);
        let mut count = 0;
        let mut sink = |_: &str, _: Stream, _: &str| count += 1;
        output.write(Stream::Stdout, b"a\nb\n", &mut sink);
        assert_eq!(output.end_call(&mut sink), 1);
        output.write(Stream::Stdout, b"c\n", &mut sink);
        assert_eq!(output.end_call(&mut sink), 0);
        assert_eq!(count, 2);
    }
}

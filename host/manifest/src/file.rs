//! Reading the files a plugin is made of, which the host does not trust.
//!
//! A manifest line can point the host at any path: `component = "/dev/zero"` would be read
//! whole (gigabytes in a second), a FIFO would block the reader forever. So a plugin's
//! files are opened without blocking, must be regular files, and are read up to a cap.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest manifest the host reads.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The largest component the host reads: far above what any language's toolchain makes
/// (a Python component with its interpreter is ~40 MiB), far below what hurts the host.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Reads the regular file at `path` (symbolic links followed) if it has at most
/// `max_bytes`; the error says what is wrong with it, without the path.
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    // O_NONBLOCK: opening a FIFO for reading does not wait for a writer; the type check
    // below then refuses it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let metadata = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!("is {what}; only a regular file is read"));
    }
    let too_big =
        |size: u64| format!("is {size} bytes, more than the {max_bytes} bytes the host reads");
    if metadata.len() > max_bytes {
        return Err(too_big(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // A file that grows while read is still cut at the cap.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_big_files_are_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("synchro-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let big = dir.join("big");
        std::fs::write(&big, vec![0u8; 2048]).unwrap();
        let cases = [
            (
                Path::new("/dev/zero"),
                "is a device; only a regular file is read",
            ),
            (&fifo, "is a FIFO; only a regular file is read"),
            (&dir, "is a directory; only a regular file is read"),
            (
                &big,
                "is 2048 bytes, more than the 1024 bytes the host reads",
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(read_capped(path, 1024).unwrap_err(), expected, "{path:?}");
        }
        assert_eq!(read_capped(&big, 2048).unwrap().len(), 2048);
        assert!(
            read_capped(&dir.join("missing"), 1024)
                .unwrap_err()
                .starts_with("cannot read: No such file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

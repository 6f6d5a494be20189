//! Files other programs read while rebound rewrites them (an export, a Postfix map, a
//! Prometheus textfile, a cursor): written to a temporary file in the same directory, synced,
//! then renamed over the target, so that a reader sees the old file or the new one, never half
//! of one, and a failure leaves the old one in place.
//!
//! The temporary file is named `.NAME.tmp-PID-N` (hidden, and not ending in `.prom`: node
//! exporter's textfile collector reads only `*.prom`). An existing target keeps its mode; a new
//! one gets the mode the caller gives (less the umask).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file being written, which replaces its target on [`AtomicFile::commit`] (and is removed
/// when dropped uncommitted).
pub struct AtomicFile {
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `target`. `mode` is the permission of a new target (e.g. 0o644 for
    /// metrics, 0o600 for a list of people's addresses).
    pub fn create(target: &Path, mode: u32) -> io::Result<AtomicFile> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
            .to_string_lossy()
            .into_owned();
        let existing = std::fs::metadata(target).ok();
        loop {
            let tmp = dir.join(format!(
                ".{name}.tmp-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(mode);
            }
            #[cfg(not(unix))]
            let _ = mode;
            match options.open(&tmp) {
                Ok(file) => {
                    #[cfg(unix)]
                    if let Some(meta) = &existing {
                        file.set_permissions(meta.permissions())?;
                    }
                    #[cfg(not(unix))]
                    let _ = &existing;
                    return Ok(AtomicFile {
                        file: Some(io::BufWriter::new(file)),
                        tmp,
                        target: target.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Syncs the new content and puts it in the target's place.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("committed once");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target)?;
        // The rename itself must survive a crash: sync the directory.
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Writes `bytes` to `target` atomically.
    pub fn write(target: &Path, mode: u32, bytes: &[u8]) -> io::Result<()> {
        let mut f = AtomicFile::create(target, mode)?;
        f.write_all(bytes)?;
        f.commit()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_replaced_whole_or_not_at_all_and_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("list.txt");
        AtomicFile::write(&target, 0o600, b"one\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&target), 0o600);
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
            AtomicFile::write(&target, 0o600, b"two\n").unwrap();
            assert_eq!(mode(&target), 0o640, "an existing file keeps its mode");
        }
        // Dropped before commit: the old content stays, no temporary file is left.
        let mut f = AtomicFile::create(&target, 0o600).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&target).unwrap(), b"two\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["list.txt"]);
    }
}

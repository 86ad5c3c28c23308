//! Files that exist whole or not at all: the bytes go to a temporary name beside the destination, are synced, and
//! are renamed over it, so a reader (or a crash, or Ctrl-C) never leaves half a file, and a failure leaves the old
//! file as it was. Native only: the browser build writes no files.

use crate::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn io(action: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Io { action, path: path.display().to_string(), message: e.to_string() }
}

/// A complete, fsynced file under a temporary name beside its destination; dropped uncommitted, it is removed.
/// Several staged files committed one after another keep each file whole, not the set.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    pub fn new(dest: &Path, bytes: &[u8]) -> crate::Result<Staged> {
        // Unique within the process (the counter) and among processes (the id); `create_new` never clobbers.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = dest.file_name().map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
        let tmp =
            dest.with_file_name(format!(".{name}.{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let mut file =
            std::fs::File::options().write(true).create_new(true).open(&tmp).map_err(|e| io("write", dest, e))?;
        let staged = Staged { tmp, dest: dest.to_owned(), committed: false };
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        // Closed before a failure removes it: some systems do not remove an open file.
        drop(file);
        written.map_err(|e| io("write", dest, e))?;
        Ok(staged)
    }

    pub fn commit(mut self) -> crate::Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| io("put the finished file in place as", &self.dest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error being returned is the one that matters.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The renames survive a crash once the directory itself is synced (POSIX); elsewhere there is nothing to sync.
pub fn sync_dir(dir: &Path) -> crate::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("sync the directory", dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    Staged::new(path, bytes)?.commit()?;
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ferrogem-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        // A staged file never committed is removed and the destination keeps its old bytes.
        drop(Staged::new(&path, b"abandoned").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")]);
        // A destination in a missing directory is an Io error, not a panic.
        assert!(matches!(write_atomic(&dir.join("missing/out.json"), b"x"), Err(Error::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Append-only log files (the audit log, the daemon's events log).
use std::{
    fs::{DirBuilder, File, OpenOptions},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

use anyhow::{Context, Result};

/// Opens `path` for appending, creating its directory (mode 0750) and the
/// file (mode 0640) when missing. Returns the file and whether it was just
/// created (then its directory entry is worth an fsync of the directory).
pub fn open_append(path: &Path) -> Result<(File, bool)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
    }
    let existed = path.exists();
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok((f, !existed))
}

#[cfg(test)]
mod tests {
    use std::{io::Write, os::unix::fs::PermissionsExt};

    #[test]
    fn creates_dir_and_file_then_appends() {
        let dir = std::env::temp_dir().join(format!("pg-logfile-{}", std::process::id()));
        let path = dir.join("a/b.log");
        let (mut f, created) = super::open_append(&path).unwrap();
        assert!(created);
        f.write_all(b"one\n").unwrap();
        let (mut f, created) = super::open_append(&path).unwrap();
        assert!(!created);
        f.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        use std::path::Path;
        assert_eq!(mode(path.parent().unwrap()), 0o750);
        assert_eq!(mode(&path), 0o640);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

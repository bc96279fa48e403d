//! The fail-static snapshot: the last synced desired state, as a state file
//! (`portguard apply -f` and `daemon --config` read it), so a host rebooted
//! while the store is unreachable enforces what it last knew.
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use super::value::state_file_json;
use crate::state::Port;

#[derive(Debug, thiserror::Error)]
#[error("writing snapshot {path}: {source}")]
pub struct SnapshotError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` atomically (temp file, fsync, rename, fsync of the directory).
pub fn write<'a>(
    path: &Path,
    ports: impl IntoIterator<Item = &'a Port>,
) -> Result<(), SnapshotError> {
    let err = |source| SnapshotError {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(&state_file_json(ports))
        .map_err(|e| err(std::io::Error::other(e)))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state;

    #[test]
    fn the_snapshot_is_a_state_file() {
        let file = r#"{"port":[{"iface":"vm1","mac":"02:00:00:00:00:01","ips":["192.0.2.1"],"attach":false}]}"#;
        let st = state::parse(file, state::Format::Json, "t").unwrap();
        let dir = std::env::temp_dir().join(format!("pg-snap-{}", std::process::id()));
        let path = dir.join("snap.json");
        write(&path, &st.ports).unwrap();
        let back = state::load(&path).unwrap();
        assert_eq!(back.ports, st.ports);
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! Running the `portguard` CLI and reading its JSON output.
//!
//! The binary is `$PORTGUARD_BIN`, or `<workspace>/target/debug/portguard`.
//! It runs under `nsenter --net=/run/netns/NS`, which switches only the network
//! namespace: `ip netns exec` would give the process a private /sys where
//! pins under /sys/fs/bpf vanish at exit.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

/// Path of the CLI binary under test.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTGUARD_BIN") {
        return PathBuf::from(p);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    ws.join("target/debug/portguard")
}

/// The audit log used by CLI runs against `pin_dir` (removed with the pin dir's guard).
pub fn audit_log_for(pin_dir: &Path) -> PathBuf {
    let name = pin_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pgt".into());
    std::env::temp_dir().join(format!("{name}.audit.jsonl"))
}

/// Removes the lock files the CLI keeps in /run/portguard for `pin_dir`
/// (change lock and event-reader lock; bpffs cannot hold them).
pub fn remove_lock_files(pin_dir: &Path) {
    let Some(name) = pin_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return;
    };
    // The two lock names escape '-' differently ('_' and systemd's \x2d).
    let forms = [name.replace('-', "_"), name.replace('-', "\\x2d")];
    for dir in ["/run/portguard", "/run/portguard/locks"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.ends_with(".lock") && forms.iter().any(|x| f.contains(x.as_str())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Runs `portguard --pin-dir PIN ARGS...` in netns `ns`.
pub fn portguard(ns: &str, pin_dir: &Path, args: &[&str]) -> Output {
    let b = bin();
    assert!(
        b.exists(),
        "portguard binary {} not found (build it or set PORTGUARD_BIN)",
        b.display()
    );
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(&b)
        .arg("--pin-dir")
        .arg(pin_dir)
        .args(args)
        .env_remove("RUST_LOG")
        // Keep test changes out of the host's real audit log (a --audit-log arg still wins).
        .env("PORTGUARD_AUDIT_LOG", audit_log_for(pin_dir))
        .output()
        .unwrap_or_else(|e| panic!("cannot run nsenter {}: {e}", b.display()))
}

/// [`portguard`] that panics (showing stderr) on a non-zero exit.
pub fn portguard_ok(ns: &str, pin_dir: &Path, args: &[&str]) -> Output {
    let o = portguard(ns, pin_dir, args);
    if !o.status.success() {
        panic!(
            "portguard {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    o
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses stdout as JSON, panicking with the text on failure.
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "output is not JSON ({e}):\nstdout: {}\nstderr: {}",
            stdout(o),
            stderr(o)
        )
    })
}

/// `stats --json` (all ports) parsed.
pub fn stats_all(ns: &str, pin_dir: &Path) -> Value {
    json(&portguard_ok(ns, pin_dir, &["stats", "--json"]))
}

/// `show --json` (all ports) parsed.
pub fn show_all(ns: &str, pin_dir: &Path) -> Value {
    json(&portguard_ok(ns, pin_dir, &["show", "--json"]))
}

/// The entry for `iface` in a `stats --json` / `show --json` array.
pub fn entry<'a>(arr: &'a Value, iface: &str) -> Option<&'a Value> {
    arr.as_array()?
        .iter()
        .find(|e| e.get("iface").and_then(Value::as_str) == Some(iface))
}

/// Counters of one port, read from a `stats --json` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub passed: (u64, u64),
    /// (reason, packets, bytes), only reasons present in the JSON.
    pub dropped: Vec<(String, u64, u64)>,
    pub would_drop: Vec<(String, u64, u64)>,
}

fn pair(v: Option<&Value>) -> (u64, u64) {
    match v {
        Some(v) => (
            v.get("packets").and_then(Value::as_u64).unwrap_or(0),
            v.get("bytes").and_then(Value::as_u64).unwrap_or(0),
        ),
        None => (0, 0),
    }
}

fn reasons(v: Option<&Value>) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    if let Some(Value::Object(m)) = v {
        for (k, c) in m {
            let (p, b) = pair(Some(c));
            out.push((k.clone(), p, b));
        }
    }
    out
}

impl PortCounters {
    pub fn from_entry(e: &Value) -> PortCounters {
        PortCounters {
            passed: pair(e.get("passed")),
            dropped: reasons(e.get("dropped")),
            would_drop: reasons(e.get("would_drop")),
        }
    }

    /// Packets dropped for `reason` (0 if absent).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped
            .iter()
            .find(|r| r.0 == reason)
            .map_or(0, |r| r.1)
    }

    pub fn dropped_bytes(&self, reason: &str) -> u64 {
        self.dropped
            .iter()
            .find(|r| r.0 == reason)
            .map_or(0, |r| r.2)
    }

    pub fn would_drop(&self, reason: &str) -> u64 {
        self.would_drop
            .iter()
            .find(|r| r.0 == reason)
            .map_or(0, |r| r.1)
    }

    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().map(|r| r.1).sum()
    }

    pub fn total_would_drop(&self) -> u64 {
        self.would_drop.iter().map(|r| r.1).sum()
    }
}

/// Counters of `iface` from `stats <iface> --json` (panics if absent).
pub fn counters(ns: &str, pin_dir: &Path, iface: &str) -> PortCounters {
    let v = json(&portguard_ok(ns, pin_dir, &["stats", iface, "--json"]));
    let e = entry(&v, iface)
        .or_else(|| {
            // Tolerate a single object instead of an array.
            (v.get("iface").and_then(Value::as_str) == Some(iface)).then_some(&v)
        })
        .unwrap_or_else(|| panic!("no stats entry for {iface} in {v}"));
    PortCounters::from_entry(e)
}

/// `true` if the output is a single non-empty line on stderr.
pub fn one_line_error(o: &Output) -> bool {
    let e = stderr(o);
    let t = e.trim_end_matches('\n');
    !t.is_empty() && !t.contains('\n')
}

/// Every `dropped` delta must be zero except those listed (exact); `passed`
/// must grow by `passed` when given.
pub fn assert_deltas(
    what: &str,
    before: &PortCounters,
    after: &PortCounters,
    passed: Option<u64>,
    want: &[(&str, u64)],
) {
    if let Some(p) = passed {
        assert_eq!(
            after.passed.0 - before.passed.0,
            p,
            "{what}: passed delta\nbefore {before:?}\nafter  {after:?}"
        );
    }
    for (reason, p, _) in &after.dropped {
        let w = want.iter().find(|d| d.0 == reason).map_or(0, |d| d.1);
        assert_eq!(
            p - before.dropped(reason),
            w,
            "{what}: dropped.{reason} delta\nbefore {before:?}\nafter  {after:?}"
        );
    }
    for (reason, _) in want {
        assert!(
            after.dropped.iter().any(|d| d.0 == *reason),
            "{what}: no dropped.{reason} in stats"
        );
    }
}

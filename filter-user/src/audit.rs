//! The audit log: one JSON object per line for every change (attach, detach,
//! bind, unbind, apply), appended and fsync'd before the command reports
//! success.
//!
//! Line format (keys always present unless noted):
//! ```json
//! {"ts":"2024-05-01T12:00:00.123456789Z","uid":0,"user":"root",
//!  "sudo_user":"alice",            // only when SUDO_USER is set
//!  "command":"bind","iface":"tap0",
//!  "before":null,"after":{...show --json object...},
//!  "result":"ok"}                  // or "failed" plus "error":"..."
//! ```
use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::who::Who;

/// Default location (also the default of the global `--audit-log` flag).
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/portguard/audit.jsonl";

/// One change, as the caller knows it. `ts`, `uid`, `user` and `sudo_user`
/// are filled in by [`AuditLog::record`].
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// attach / detach / bind / unbind / apply.
    pub command: String,
    pub iface: Option<String>,
    /// The port before the change (`report::show_json` shape), `None` = no record.
    pub before: Option<Value>,
    /// The port after the change, `None` = no record (or unknown after a failure).
    pub after: Option<Value>,
    /// `Err(message)` for a failed change.
    pub result: Result<(), String>,
}

impl AuditEntry {
    pub fn new(command: &str, iface: Option<&str>) -> AuditEntry {
        AuditEntry {
            command: command.to_string(),
            iface: iface.map(str::to_string),
            before: None,
            after: None,
            result: Ok(()),
        }
    }

    /// The JSON line (without the trailing newline) with the given identity fields.
    pub fn to_json(&self, ts: DateTime<Utc>, who: &Who) -> Value {
        let mut m = Map::new();
        m.insert(
            "ts".into(),
            json!(ts.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        );
        m.insert("uid".into(), json!(who.uid));
        m.insert("user".into(), json!(who.user));
        if let Some(s) = &who.sudo_user {
            m.insert("sudo_user".into(), json!(s));
        }
        m.insert("command".into(), json!(self.command));
        m.insert("iface".into(), json!(self.iface));
        m.insert("before".into(), self.before.clone().unwrap_or(Value::Null));
        m.insert("after".into(), self.after.clone().unwrap_or(Value::Null));
        match &self.result {
            Ok(()) => {
                m.insert("result".into(), json!("ok"));
            }
            Err(e) => {
                m.insert("result".into(), json!("failed"));
                m.insert("error".into(), json!(e));
            }
        }
        Value::Object(m)
    }
}

/// Appender for the audit log at one path.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `e` as one line (under an exclusive flock, one write) and
    /// fsyncs the file (and the directory when the file was just created).
    /// Creates the directory (mode 0750) and the file (mode 0640) if missing.
    pub fn record(&self, e: &AuditEntry) -> Result<()> {
        let mut b = AuditBatch::default();
        b.push(e)?;
        self.write(&b)
    }

    /// Appends a batch's lines, in order, with one write and one fsync (as
    /// [`AuditLog::record`] does for one). Nothing to write: nothing done.
    pub fn write(&self, b: &AuditBatch) -> Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        self.append_text(&b.text)
    }

    /// Appends an already complete JSON object (used by tests).
    pub fn append(&self, line: &Value) -> Result<()> {
        let mut text = serde_json::to_vec(line)?;
        text.push(b'\n');
        self.append_text(&text)
    }

    fn append_text(&self, text: &[u8]) -> Result<()> {
        let (f, created) = crate::logfile::open_append(&self.path)
            .with_context(|| format!("cannot open audit log {}", self.path.display()))?;
        // Released when `f` is closed, after the fsync.
        f.lock()
            .with_context(|| format!("cannot lock audit log {}", self.path.display()))?;
        (&f).write_all(text)
            .with_context(|| format!("cannot write audit log {}", self.path.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot fsync audit log {}", self.path.display()))?;
        if created {
            let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Ok(d) = File::open(dir.unwrap_or(Path::new("."))) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// Changes of one batch (a plan of thousands of ports), each line stamped
/// and serialized when it is pushed, written together by [`AuditLog::write`]:
/// one write and one fsync for the batch, not one per port.
#[derive(Debug, Default)]
pub struct AuditBatch {
    text: Vec<u8>,
    lines: usize,
    who: Option<Who>,
}

impl AuditBatch {
    pub fn push(&mut self, e: &AuditEntry) -> Result<()> {
        self.push_parts(
            &e.command,
            e.iface.as_deref(),
            e.before.as_ref(),
            e.after.as_ref(),
            &e.result,
        )
    }

    /// [`AuditBatch::push`] of an entry's parts, borrowed: a sync of
    /// thousands of ports does not copy every record twice to log it.
    pub fn push_parts(
        &mut self,
        command: &str,
        iface: Option<&str>,
        before: Option<&Value>,
        after: Option<&Value>,
        result: &Result<(), String>,
    ) -> Result<()> {
        let who = self.who.get_or_insert_with(Who::current);
        let line = Line {
            after,
            before,
            command,
            error: result.as_ref().err().map(String::as_str),
            iface,
            result: if result.is_ok() { "ok" } else { "failed" },
            sudo_user: who.sudo_user.as_deref(),
            ts: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
            uid: who.uid,
            user: &who.user,
        };
        serde_json::to_writer(&mut self.text, &line)?;
        self.text.push(b'\n');
        self.lines += 1;
        Ok(())
    }

    /// Lines pushed.
    pub fn len(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// One line as [`AuditEntry::to_json`] has it (the same keys, in the same
/// sorted order), serialized from borrowed parts.
#[derive(serde::Serialize)]
struct Line<'a> {
    after: Option<&'a Value>,
    before: Option<&'a Value>,
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    iface: Option<&'a str>,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sudo_user: Option<&'a str>,
    ts: String,
    uid: u32,
    user: &'a str,
}

/// Runs a change and records it: `change` returns the port after the change
/// (`show_json` shape or `None`); its error is logged as `failed` and
/// returned. The audit write happens before this returns, so the caller
/// reports success only after the line is on disk. A failure to write the
/// audit log after a successful change is an error too (the change is not
/// undone; the message says so).
pub fn audited<T>(
    log: &AuditLog,
    mut entry: AuditEntry,
    change: impl FnOnce(&mut AuditEntry) -> Result<T>,
) -> Result<T> {
    let r = change(&mut entry);
    entry.result = match &r {
        Ok(_) => Ok(()),
        Err(e) => Err(crate::error::one_line(e)),
    };
    let logged = log.record(&entry);
    match (r, logged) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(le)) => Err(le.context(format!(
            "the {} was applied but could not be written to the audit log",
            entry.command
        ))),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(le)) => {
            // Without root nothing can have changed (and the log is usually
            // not writable): keep the one-line error clean then.
            if rustix::process::geteuid().is_root() {
                eprintln!(
                    "portguard: warning: audit log: {}",
                    crate::error::one_line(&le)
                );
            }
            Err(e)
        }
    }
}

/// What `portguard audit` selects.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<DateTime<FixedOffset>>,
    pub iface: Option<String>,
}

/// `--since`: RFC 3339 (`2024-05-01T12:00:00Z`) or a duration back from `now`
/// (`90s`, `15m`, `1h`, `2d`, `1w`, combinations like `1h30m`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let d = crate::parse::parse_duration(s).map_err(|_| {
        anyhow!("invalid --since {s:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or a duration like 30m, 1h, 2d")
    })?;
    let d = chrono::Duration::from_std(d).map_err(|_| anyhow!("--since {s:?} is too far back"))?;
    let t = now
        .checked_sub_signed(d)
        .ok_or_else(|| anyhow!("--since {s:?} is too far back"))?;
    Ok(t.fixed_offset())
}

/// Whether a parsed line passes the filter (lines without a parsable `ts`
/// fail a `since` filter).
pub fn matches(v: &Value, f: &Filter) -> bool {
    if let Some(i) = &f.iface {
        if v.get("iface").and_then(Value::as_str) != Some(i.as_str()) {
            return false;
        }
    }
    if let Some(since) = &f.since {
        let ts = v
            .get("ts")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        match ts {
            Some(t) if t >= *since => {}
            _ => return false,
        }
    }
    true
}

/// Reads the log, returning the matching entries in order and the number of
/// lines that were not JSON objects (skipped). A missing file is empty.
pub fn read(path: &Path, f: &Filter) -> Result<(Vec<Value>, usize)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut out = Vec::new();
    let mut bad = 0;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(&line) {
            Ok(v) if v.is_object() => {
                if matches(&v, f) {
                    out.push(v);
                }
            }
            _ => bad += 1,
        }
    }
    Ok((out, bad))
}

/// Human one-line rendering of an entry for `portguard audit`.
pub fn human(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let mut who = s("user");
    if let Some(su) = v.get("sudo_user").and_then(Value::as_str) {
        who = format!("{who}(sudo:{su})");
    }
    let summary = |x: Option<&Value>| -> String {
        match x {
            None | Some(Value::Null) => "-".into(),
            Some(p) => {
                let mut parts = Vec::new();
                if let Some(m) = p.get("mac").and_then(Value::as_str) {
                    parts.push(format!("mac={m}"));
                }
                if let Some(ips) = p.get("ips").and_then(Value::as_array) {
                    if !ips.is_empty() {
                        let ips: Vec<&str> = ips.iter().filter_map(Value::as_str).collect();
                        parts.push(format!("ips={}", ips.join(",")));
                    }
                }
                if let Some(t) = p.get("tenant").and_then(Value::as_str) {
                    if !t.is_empty() {
                        parts.push(format!("tenant={t}"));
                    }
                }
                if let Some(m) = p.get("mode").and_then(Value::as_str) {
                    parts.push(format!("mode={m}"));
                }
                if let Some(a) = p.get("attach_mode").and_then(Value::as_str) {
                    parts.push(format!("attached={a}"));
                }
                if parts.is_empty() {
                    "{}".into()
                } else {
                    parts.join(" ")
                }
            }
        }
    };
    let mut line = format!(
        "{} {} {} {} {}",
        s("ts"),
        who,
        s("command"),
        s("iface"),
        s("result"),
    );
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        line.push_str(&format!(" error={e:?}"));
    }
    let before = v.get("before");
    let after = v.get("after");
    if before.is_some_and(|b| !b.is_null()) || after.is_some_and(|a| !a.is_null()) {
        line.push_str(&format!(" [{}] -> [{}]", summary(before), summary(after)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = parse_since("1h", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T11:00:00+00:00");
        let t = parse_since("2024-01-01T00:00:00+02:00", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-01T00:00:00+02:00");
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn a_batch_is_written_in_order_in_one_append() {
        let dir = std::env::temp_dir().join(format!("pg-audit-batch-{}", std::process::id()));
        let path = dir.join("audit.jsonl");
        let log = AuditLog::new(&path);
        let mut b = AuditBatch::default();
        log.write(&b).unwrap();
        assert!(!path.exists(), "an empty batch writes nothing");
        for i in 0..3 {
            let mut e = AuditEntry::new("agent", Some(&format!("vm{i}")));
            if i == 1 {
                e.result = Err("binding vm1: no free slot".into());
            }
            b.push(&e).unwrap();
        }
        assert_eq!(b.len(), 3);
        log.record(&AuditEntry::new("bind", Some("tap0"))).unwrap();
        log.write(&b).unwrap();
        let (all, bad) = read(&path, &Filter::default()).unwrap();
        assert_eq!(bad, 0);
        let ifaces: Vec<&str> = all.iter().map(|v| v["iface"].as_str().unwrap()).collect();
        assert_eq!(ifaces, ["tap0", "vm0", "vm1", "vm2"]);
        assert_eq!(all[2]["result"], "failed");
        assert_eq!(all[2]["error"], "binding vm1: no free slot");
        assert!(all.iter().all(|v| v["ts"].is_string() && v["uid"].is_u64()));
        // Byte for byte what `record` writes (to_json), given the same stamp.
        let text = std::fs::read_to_string(&path).unwrap();
        let raw = text.lines().nth(2).unwrap();
        let ts = DateTime::parse_from_rfc3339(all[2]["ts"].as_str().unwrap()).unwrap();
        let mut e = AuditEntry::new("agent", Some("vm1"));
        e.result = Err("binding vm1: no free slot".into());
        let want = e.to_json(ts.with_timezone(&Utc), &Who::current());
        assert_eq!(raw, serde_json::to_string(&want).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roundtrip_and_filter() {
        let dir = std::env::temp_dir().join(format!("pg-audit-{}", std::process::id()));
        let path = dir.join("sub/audit.jsonl");
        let log = AuditLog::new(&path);
        let mut e = AuditEntry::new("bind", Some("tap0"));
        e.after = Some(json!({"mac": "02:00:00:00:00:01", "ips": ["192.0.2.1/32"]}));
        log.record(&e).unwrap();
        let mut f = AuditEntry::new("bind", Some("tap1"));
        f.result = Err("invalid MAC".into());
        log.record(&f).unwrap();
        std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + "garbage\n").unwrap();
        let (all, bad) = read(&path, &Filter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(bad, 1);
        assert_eq!(all[0]["result"], "ok");
        assert_eq!(all[0]["before"], Value::Null);
        assert!(all[0]["uid"].is_u64());
        assert!(all[0].get("error").is_none());
        assert_eq!(all[1]["result"], "failed");
        assert_eq!(all[1]["error"], "invalid MAC");
        let (only, _) = read(
            &path,
            &Filter {
                iface: Some("tap1".into()),
                since: None,
            },
        )
        .unwrap();
        assert_eq!(only.len(), 1);
        let (none, _) = read(
            &path,
            &Filter {
                iface: None,
                since: Some(parse_since("2999-01-01T00:00:00Z", Utc::now()).unwrap()),
            },
        )
        .unwrap();
        assert!(none.is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert!(human(&all[0]).contains("bind tap0 ok"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The `log` backend of the `portguard` binary: one line per record on
//! stderr, `PREFIX: message` (`PREFIX: warning: ...` for warnings). Under
//! systemd (stderr is the journal stream named by `JOURNAL_STREAM`) each
//! line starts with its syslog priority (`<4>` = warning, sd-daemon(3)), so
//! the journal records the level; the journal adds its own timestamps.
use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLog {
    prefix: &'static str,
    journal: bool,
}

impl Log for StderrLog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= Level::Info
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            // One write per line: concurrent threads' lines do not interleave.
            let _ = std::io::stderr().lock().write_all(self.line(r).as_bytes());
        }
    }

    fn flush(&self) {}
}

impl StderrLog {
    fn line(&self, r: &Record) -> String {
        let (priority, label) = match r.level() {
            Level::Error => (3, "error: "),
            Level::Warn => (4, "warning: "),
            Level::Info => (6, ""),
            Level::Debug | Level::Trace => (7, ""),
        };
        let mut line = String::new();
        if self.journal {
            line.push_str(&format!("<{priority}>"));
        }
        line.push_str(&format!("{}: {label}{}\n", self.prefix, r.args()));
        line
    }
}

/// Whether stderr is the journal's stream (`JOURNAL_STREAM` = `dev:ino` of it).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    v.to_string_lossy() == format!("{}:{}", st.st_dev, st.st_ino)
}

/// Installs the logger (once per process; later calls change nothing).
pub fn init(prefix: &'static str) {
    let logger = Box::new(StderrLog {
        prefix,
        journal: stderr_is_journal(),
    });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(journal: bool, level: Level, msg: &str) -> String {
        let l = StderrLog {
            prefix: "portguard daemon",
            journal,
        };
        l.line(
            &Record::builder()
                .level(level)
                .args(format_args!("{msg}"))
                .build(),
        )
    }

    #[test]
    fn lines_carry_the_level() {
        assert_eq!(
            line(false, Level::Info, "applied x"),
            "portguard daemon: applied x\n"
        );
        assert_eq!(
            line(false, Level::Warn, "audit log: full"),
            "portguard daemon: warning: audit log: full\n"
        );
        assert_eq!(
            line(true, Level::Error, "NOT applied"),
            "<3>portguard daemon: error: NOT applied\n"
        );
    }
}

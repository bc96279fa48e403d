//! `portguard daemon`: keeps the kernel state equal to a state file.
//!
//! * applies the file at start, again on SIGHUP and whenever the file changes
//!   (its mtime, size or inode, polled every second; a rename over it counts);
//!   an invalid file is rejected as a whole and the current state stays;
//! * follows rtnetlink link events (RTM_NEWLINK/RTM_DELLINK): a port of the
//!   file is bound and attached the moment its interface appears, a guarded
//!   one attached fail-closed, a deleted one's stale record removed (see
//!   [`crate::lifecycle`]); every link is re-read after lost events and
//!   every `resync` interval as a safety net;
//! * serves Prometheus metrics ([`crate::metrics::serve`]) when asked to;
//! * consumes the drop events into a JSON-lines log rotated by size
//!   (`FILE`, `FILE.1` ... `FILE.<keep>`), when asked to;
//! * exits on SIGTERM/SIGINT leaving every pin (and so the enforcement) in place;
//! * speaks the systemd notify protocol when `NOTIFY_SOCKET` is set (Type=notify).
use std::{
    fs::{self, File},
    io::Write,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use crate::{
    clock::ClockOffset,
    error::one_line,
    events::{EventReader, PortNames},
    lifecycle::{
        netlink,
        reconcile::{self, Reconciler},
        LinkEvents, Received,
    },
    metrics,
    pinned::Pinned,
    state,
};

/// Everything the daemon is told on its command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    pub pin_dir: PathBuf,
    pub audit_log: PathBuf,
    /// Capacity of the maps if it creates them (`--max-ports`).
    pub max_ports: Option<u32>,
    pub metrics: Option<SocketAddr>,
    pub events_log: Option<PathBuf>,
    pub events_log_max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub events_log_keep: usize,
    pub prune: bool,
    /// How often the config file's mtime is checked.
    pub poll: Duration,
    /// How often every link is re-read and everything converged, besides
    /// the link events (a safety net).
    pub resync: Duration,
}

/// Identity of the config file's current contents, as far as stat tells.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    size: u64,
    ino: u64,
    dev: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        size: m.len(),
        ino: m.ino(),
        dev: m.dev(),
    })
}

/// The reconciler's lines at their level: failures are errors, audit-log
/// trouble a warning, the rest (what changed) information.
fn reconciler_log(m: &str) {
    if m.contains(" FAILED") {
        log::error!("{m}");
    } else if let Some(w) = m.strip_prefix("warning: ") {
        log::warn!("{w}");
    } else {
        log::info!("{m}");
    }
}

/// The daemon's reconciler: changes are audited as `apply`.
pub fn reconciler(o: &Options) -> Reconciler {
    Reconciler::new(
        reconcile::Options {
            pin_dir: o.pin_dir.clone(),
            audit_log: o.audit_log.clone(),
            prune: o.prune,
            audit_command: "apply".into(),
            max_ports: o.max_ports,
        },
        reconciler_log,
    )
}

/// Validates the file, then makes it the reconciler's desired state (which
/// converges everything). Ports whose interface does not exist are pending
/// until it appears. Returns a one-line summary.
pub fn apply_file(o: &Options, rec: &mut Reconciler) -> Result<String> {
    rec.set_desired(state::load(&o.config)?)
}

// ------------------------------------------------------------ events log

/// An append-only log rotated by size: when a line would take the current
/// file past `max_bytes`, `FILE.(k-1)` becomes `FILE.k` (for k = keep..2),
/// `FILE` becomes `FILE.1` and a new `FILE` is started. `keep = 0` keeps no
/// old file. A line longer than `max_bytes` is written to a file of its own.
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
}

impl RotatingLog {
    pub fn new(path: &Path, max_bytes: u64, keep: usize) -> RotatingLog {
        RotatingLog {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file: None,
            size: 0,
        }
    }

    /// `FILE.n`.
    pub fn rotated(&self, n: usize) -> PathBuf {
        let mut s = self.path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn open(&mut self) -> Result<&mut File> {
        if self.file.is_none() {
            let (f, _) = crate::logfile::open_append(&self.path)?;
            self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("just opened"))
    }

    fn rotate(&mut self) -> Result<()> {
        self.file = None;
        if self.keep == 0 {
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = fs::remove_file(self.rotated(self.keep));
            for k in (1..self.keep).rev() {
                let from = self.rotated(k);
                if from.exists() {
                    fs::rename(&from, self.rotated(k + 1))
                        .with_context(|| format!("rotating {}", from.display()))?;
                }
            }
            if self.path.exists() {
                fs::rename(&self.path, self.rotated(1))
                    .with_context(|| format!("rotating {}", self.path.display()))?;
            }
        }
        self.size = 0;
        Ok(())
    }

    /// Appends `line` and a newline.
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        let len = line.len() as u64 + 1;
        self.open()?;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        let f = self.open()?;
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        f.write_all(&buf)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.size += len;
        Ok(())
    }
}

/// Identity of the pinned maps (a removed and recreated pin dir has new ones).
fn maps_ino(pin_dir: &Path) -> Option<u64> {
    fs::metadata(pin_dir.join("maps").join("EVENTS"))
        .ok()
        .map(|m| m.ino())
}

/// Consumes drop events into `log` until `stop`; reopens the ring buffer when
/// the pinned maps are recreated. Runs on a thread of its own.
fn events_loop(pin_dir: PathBuf, mut log: RotatingLog, stop: Arc<AtomicBool>) {
    // Each distinct error is logged once, not every second.
    let mut last_err: Option<String> = None;
    let report = |last_err: &mut Option<String>, e: anyhow::Error| {
        let s = one_line(&e);
        if last_err.as_ref() != Some(&s) {
            log::warn!("events: {s}");
            *last_err = Some(s);
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let ino = maps_ino(&pin_dir);
        let opened = (|| -> Result<(Pinned, EventReader)> {
            if ino.is_none() {
                anyhow::bail!("no pinned maps under {} yet", pin_dir.display());
            }
            let mut p = Pinned::open(&pin_dir)?;
            let r = EventReader::open(&mut p)?;
            Ok((p, r))
        })();
        let (p, mut reader) = match opened {
            Ok(x) => x,
            Err(e) => {
                report(&mut last_err, e);
                thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        last_err = None;
        let mut names = PortNames::new();
        let mut clock = ClockOffset::measure();
        let mut checked = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = reader.wait(Duration::from_millis(200)) {
                report(&mut last_err, e);
                thread::sleep(Duration::from_millis(200));
            }
            let mut write_err = None;
            reader.drain(|ev| {
                let line = match ev {
                    Ok(ev) => {
                        let port = names.get(&p, ev.ifindex);
                        ev.to_json(&clock, &port).to_string()
                    }
                    Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
                };
                if let Err(e) = log.write_line(&line) {
                    write_err = Some(e);
                    return false;
                }
                true
            });
            if let Some(e) = write_err {
                report(&mut last_err, e);
            }
            if checked.elapsed() >= Duration::from_secs(1) {
                checked = Instant::now();
                // Wall clock steps (NTP) move the offset; re-measure now and then.
                clock = ClockOffset::measure();
                if maps_ino(&pin_dir) != ino {
                    log_reopen(&pin_dir);
                    break;
                }
            }
        }
    }
}

fn log_reopen(pin_dir: &Path) {
    log::info!(
        "events: the maps under {} were recreated; reopening the ring buffer",
        pin_dir.display()
    );
}

// ------------------------------------------------------------ sd_notify

/// Sends a systemd notification when running under Type=notify.
fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let r = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), Path::new(&path))
    };
    if let Err(e) = r {
        log::warn!("sd_notify: {e}");
    }
}

// ------------------------------------------------------------ main loop

/// Runs the daemon until SIGTERM/SIGINT. Fails at start when the first apply
/// fails (an invalid file, a missing interface): the pinned state is left as
/// it was.
pub fn run(o: Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(main_loop(o))
}

async fn main_loop(o: Options) -> Result<()> {
    // Signals first, so that a SIGHUP right after start is not fatal.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;

    // Subscribed before the first full sync: a link created in between is
    // in the sync's dump, or in an event queued meanwhile.
    let events = LinkEvents::subscribe().context("following link events")?;
    let mut rec = reconciler(&o);
    let mut last = stamp(&o.config);
    match apply_file(&o, &mut rec) {
        Ok(s) => log::info!("applied {}: {s}", o.config.display()),
        Err(e) => {
            return Err(e.context(format!("initial apply of {}", o.config.display())));
        }
    }
    // Ready for the first interface that appears.
    rec.warm_up();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut metrics_task = None;
    if let Some(addr) = o.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        log::info!("serving metrics on http://{addr}/metrics");
        let mut rx = stop_rx.clone();
        let pin_dir = o.pin_dir.clone();
        metrics_task = Some(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = metrics::serve_on(listener, pin_dir, shutdown).await {
                log::error!("metrics: {}", one_line(&e));
            }
        }));
    }

    let events_stop = Arc::new(AtomicBool::new(false));
    let mut events_thread = None;
    if let Some(path) = &o.events_log {
        let log_file = RotatingLog::new(path, o.events_log_max_bytes, o.events_log_keep);
        let (pin_dir, stop) = (o.pin_dir.clone(), events_stop.clone());
        log::info!(
            "writing drop events to {} (rotated at {} bytes, {} old file(s) kept)",
            path.display(),
            o.events_log_max_bytes,
            o.events_log_keep
        );
        events_thread = Some(
            thread::Builder::new()
                .name("events".into())
                .spawn(move || events_loop(pin_dir, log_file, stop))
                .context("starting the events thread")?,
        );
    }

    let (link_tx, mut link_rx) = tokio::sync::mpsc::unbounded_channel();
    let link_stop = Arc::new(AtomicBool::new(false));
    let link_thread = {
        let stop = link_stop.clone();
        thread::Builder::new()
            .name("links".into())
            .spawn(move || netlink::forward(events, &stop, |r| link_tx.send(r).is_ok()))
            .context("starting the link-event thread")?
    };

    sd_notify("READY=1");
    let mut tick = tokio::time::interval(o.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync_tick = tokio::time::interval(o.resync);
    resync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync_tick.tick().await; // the first tick is immediate: the start just synced
    let reapply = |why: &str, rec: &mut Reconciler| {
        sd_notify("RELOADING=1");
        match apply_file(&o, rec) {
            Ok(s) => log::info!("{why}: applied {}: {s}", o.config.display()),
            Err(e) => log::error!(
                "{why}: NOT applied, the current state stays: {}",
                one_line(&e)
            ),
        }
        sd_notify("READY=1");
    };
    let resync = |why: &str, rec: &mut Reconciler| {
        if let Err(e) = rec.resync() {
            log::error!("{why}: resync: {}", one_line(&e));
        }
    };
    let mut missing_reported = false;
    loop {
        tokio::select! {
            msg = link_rx.recv() => match msg {
                Some(Ok(Received::Events(evs))) => {
                    for ev in &evs {
                        if let Err(e) = rec.on_event(ev) {
                            log::error!("{}: {}", ev.link().name, one_line(&e));
                        }
                    }
                }
                Some(Ok(Received::Overrun)) => {
                    log::warn!("link events were lost (receive queue overrun): full resync");
                    resync("overrun", &mut rec);
                }
                Some(Ok(Received::Timeout)) => {}
                Some(Err(e)) => {
                    log::error!("link events: {e}; full resync");
                    resync("link events", &mut rec);
                }
                None => anyhow::bail!("the link-event thread stopped"),
            },
            _ = resync_tick.tick() => resync("periodic", &mut rec),
            _ = hup.recv() => {
                last = stamp(&o.config);
                reapply("SIGHUP", &mut rec);
            }
            _ = tick.tick() => {
                let now = stamp(&o.config);
                if now.is_none() {
                    if !missing_reported {
                        log::warn!("{} is gone; keeping the current state", o.config.display());
                        missing_reported = true;
                    }
                    continue;
                }
                missing_reported = false;
                if now != last {
                    last = now;
                    reapply("config changed", &mut rec);
                }
            }
            _ = term.recv() => { log::info!("SIGTERM: exiting; enforcement stays in place"); break; }
            _ = int.recv() => { log::info!("SIGINT: exiting; enforcement stays in place"); break; }
        }
    }
    sd_notify("STOPPING=1");
    let _ = stop_tx.send(true);
    events_stop.store(true, Ordering::SeqCst);
    link_stop.store(true, Ordering::SeqCst);
    if let Some(t) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    if let Some(t) = events_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    let _ = tokio::task::spawn_blocking(move || link_thread.join()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("pg-rot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let mut l = RotatingLog::new(&path, 25, 2);
        for i in 0..10 {
            l.write_line(&format!("line-{i:04}")).unwrap(); // 10 bytes each
        }
        // 2 lines per file: current = 8,9; .1 = 6,7; .2 = 4,5; .3 never exists.
        assert_eq!(fs::read_to_string(&path).unwrap(), "line-0008\nline-0009\n");
        assert_eq!(
            fs::read_to_string(l.rotated(1)).unwrap(),
            "line-0006\nline-0007\n"
        );
        assert_eq!(
            fs::read_to_string(l.rotated(2)).unwrap(),
            "line-0004\nline-0005\n"
        );
        assert!(!l.rotated(3).exists());
        // A new writer continues the existing file's size.
        let mut l = RotatingLog::new(&path, 25, 2);
        l.write_line("line-0010").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "line-0010\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}

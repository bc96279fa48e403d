//! Prometheus metrics: the text exposition of the counters in the pinned
//! maps ([`render`]) and a small HTTP server for it ([`serve`]), reused by
//! `portguard metrics` and the daemon.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `portguard_passed_packets_total`, `portguard_passed_bytes_total` | counter | iface, tenant, mode |
//! | `portguard_dropped_packets_total`, `portguard_dropped_bytes_total` | counter | iface, tenant, reason, mode |
//! | `portguard_events_sampled_out_total`, `portguard_events_lost_total` | counter | iface, tenant |
//! | `portguard_bindings`, `portguard_attached_ports`, `portguard_stale_records` | gauge | - |
//!
//! A stale record (its interface was deleted or moved away) is counted in
//! `portguard_stale_records` only: its per-port series would duplicate
//! those of an interface recreated under the same name.
//!
//! `mode` of the passed counters is the port's current mode (`enforce`,
//! `monitor`, or `unbound` for an attached port without binding). In the
//! dropped counters `mode="enforce"` are real drops (`stats --json`
//! `dropped`) and `mode="monitor"` monitor-mode would-drops (`would_drop`).
//! Every reason is exported for the port's current mode (zeros included,
//! so rates work from the first scrape); the other mode's series appear
//! only when non-zero (left over from before a mode switch).
use std::{
    convert::Infallible,
    fmt::Write as _,
    future::Future,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use filter_common::{Counter, Reason};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{pinned::Pinned, report};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";

/// Escapes a label value (backslash, double quote, newline).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: Vec<(&'static str, String)>, v: u64) {
        self.samples.push((labels, v));
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, v) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(val));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {v}");
        }
    }
}

/// The exposition of every port's counters under `p`.
pub fn render(p: &Pinned) -> Result<String> {
    let rows = report::collect(p, None)?;
    let mut passed_p = Family::new(
        "portguard_passed_packets_total",
        "counter",
        "Frames passed by the filter (monitor-mode would-drops included).",
    );
    let mut passed_b = Family::new(
        "portguard_passed_bytes_total",
        "counter",
        "Bytes of frames passed by the filter (monitor-mode would-drops included).",
    );
    let mut drop_p = Family::new(
        "portguard_dropped_packets_total",
        "counter",
        "Frames dropped (mode=\"enforce\") or that would have been dropped (mode=\"monitor\"), by reason.",
    );
    let mut drop_b = Family::new(
        "portguard_dropped_bytes_total",
        "counter",
        "Bytes of frames dropped (mode=\"enforce\") or that would have been dropped (mode=\"monitor\"), by reason.",
    );
    let mut sampled = Family::new(
        "portguard_events_sampled_out_total",
        "counter",
        "Drop events suppressed by the per-port, per-reason event sampling.",
    );
    let mut lost = Family::new(
        "portguard_events_lost_total",
        "counter",
        "Drop events lost because the ring buffer was full.",
    );
    let mut bindings = Family::new(
        "portguard_bindings",
        "gauge",
        "Ports with a binding (attached or not).",
    );
    let mut attached = Family::new(
        "portguard_attached_ports",
        "gauge",
        "Interfaces the XDP program is attached to.",
    );
    let mut n_bound = 0u64;
    let mut n_attached = 0u64;
    let mut n_stale = 0u64;
    for (info, s) in &rows {
        // A deleted interface's record: its series would duplicate the new
        // interface's (same name); counted as stale, not exported.
        if report::is_stale(info) {
            n_stale += 1;
            continue;
        }
        let iface = info.ifname.clone();
        let tenant = info.tenant.clone();
        let mode = report::mode_name(info);
        if info.binding.is_some() {
            n_bound += 1;
        }
        if info.attach_mode != 0 {
            n_attached += 1;
        }
        let base = || vec![("iface", iface.clone()), ("tenant", tenant.clone())];
        let mut l = base();
        l.push(("mode", mode.to_string()));
        passed_p.push(l.clone(), s.passed.packets);
        passed_b.push(l, s.passed.bytes);
        let monitor_now = mode == "monitor";
        let mut emit = |which: &str, c: &[Counter], current: bool| {
            for r in Reason::DROPS {
                let x = c[r as usize];
                if !current && x.packets == 0 && x.bytes == 0 {
                    continue;
                }
                let mut l = base();
                l.push(("reason", r.name().to_string()));
                l.push(("mode", which.to_string()));
                drop_p.push(l.clone(), x.packets);
                drop_b.push(l, x.bytes);
            }
        };
        emit("enforce", &s.dropped, !monitor_now);
        emit("monitor", &s.would_drop, monitor_now);
        sampled.push(base(), s.sampled_out);
        lost.push(base(), s.events_lost);
    }
    bindings.push(Vec::new(), n_bound);
    attached.push(Vec::new(), n_attached);
    let mut stale = Family::new(
        "portguard_stale_records",
        "gauge",
        "Port records whose interface no longer exists (not exported per port).",
    );
    stale.push(Vec::new(), n_stale);
    // Every record holds a slot; the capacity was fixed at map creation.
    let mut slots = Family::new(
        "portguard_port_slots",
        "gauge",
        "Ports this pin dir can hold (--max-ports when its maps were created, minus 1).",
    );
    slots.push(Vec::new(), u64::from(p.port_capacity()));
    let mut used = Family::new(
        "portguard_port_slots_used",
        "gauge",
        "Port records (bound or attached), each holding one slot.",
    );
    used.push(Vec::new(), rows.len() as u64);
    let mut out = String::new();
    for f in [
        &passed_p, &passed_b, &drop_p, &drop_b, &sampled, &lost, &bindings, &attached, &stale,
        &slots, &used,
    ] {
        f.render(&mut out);
    }
    Ok(out)
}

/// The exposition when there is no state under `pin_dir` yet (gauges at 0).
pub fn render_empty() -> String {
    let mut out = String::new();
    let mut b = Family::new(
        "portguard_bindings",
        "gauge",
        "Ports with a binding (attached or not).",
    );
    b.push(Vec::new(), 0);
    let mut a = Family::new(
        "portguard_attached_ports",
        "gauge",
        "Interfaces the XDP program is attached to.",
    );
    a.push(Vec::new(), 0);
    b.render(&mut out);
    a.render(&mut out);
    out
}

/// Renders the pin dir's state, reusing an opened [`Pinned`] while its maps
/// are the same pinned objects (a removed and recreated pin dir is reopened).
/// Never creates state: without `<pin_dir>/maps` the exposition is empty.
pub struct Scraper {
    pin_dir: PathBuf,
    cached: Option<(u64, Pinned)>,
}

impl Scraper {
    pub fn new(pin_dir: &Path) -> Scraper {
        Scraper {
            pin_dir: pin_dir.to_path_buf(),
            cached: None,
        }
    }

    pub fn render(&mut self) -> Result<String> {
        let ports = self.pin_dir.join("maps").join("PORTS");
        let ino = match std::fs::metadata(&ports) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.cached = None;
                return Ok(render_empty());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", ports.display())),
        };
        if self.cached.as_ref().is_none_or(|(i, _)| *i != ino) {
            self.cached = None;
            let p = Pinned::open(&self.pin_dir)?;
            self.cached = Some((ino, p));
        }
        let (_, p) = self.cached.as_ref().expect("just set");
        render(p)
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn handle(scraper: &Mutex<Scraper>, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let res = match scraper.lock() {
                Ok(mut s) => s.render(),
                Err(poisoned) => poisoned.into_inner().render(),
            };
            match res {
                Ok(body) => {
                    let mut r = text(StatusCode::OK, body);
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(CONTENT_TYPE),
                    );
                    r
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "portguard: cannot read counters: {}\n",
                        crate::error::one_line(&e)
                    ),
                ),
            }
        }
        "/" => text(
            StatusCode::OK,
            "portguard metrics exporter: see /metrics\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n".into()),
    }
}

/// Serves `/metrics` for `pin_dir` on `addr` until `shutdown` completes.
pub async fn serve(
    pin_dir: PathBuf,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    serve_on(listener, pin_dir, shutdown).await
}

/// [`serve`] on an already bound listener (e.g. port 0 in tests).
pub async fn serve_on(
    listener: TcpListener,
    pin_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let scraper = Arc::new(Mutex::new(Scraper::new(&pin_dir)));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("metrics: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let scraper = scraper.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let scraper = scraper.clone();
                let method = req.method().clone();
                let path = req.uri().path().to_string();
                async move {
                    // Reading the maps is a few syscalls per port: cheap, but blocking.
                    let r = tokio::task::spawn_blocking(move || handle(&scraper, &method, &path))
                        .await
                        .unwrap_or_else(|e| {
                            text(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                format!("portguard: metrics handler failed: {e}\n"),
                            )
                        });
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn empty() {
        let s = render_empty();
        assert!(s.contains("# TYPE portguard_bindings gauge\nportguard_bindings 0\n"));
    }
}

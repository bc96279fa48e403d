//! Acceptance tests for "observability and evidence": drop events (JSON,
//! sampling, pcap, single consumer), Prometheus metrics, `stats --tenant /
//! --by tenant` and the audit log. VMs live in their own network namespaces
//! behind a bridge (tests/src/netns.rs); the CLI runs through `nsenter` in the
//! lab's host namespace.
//!
//! Needs root. Run: `PORTGUARD_BIN=target/debug/portguard cargo test -p portguard-tests --test integration observability::`.
use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use portguard_tests::{
    cli::{self, PortCounters},
    frames::{self as f, Mac},
    netns::{Lab, Vm},
};
use serde_json::Value;

/// A destination nobody owns (no replies disturb the counters).
const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
/// An address no VM is bound to.
const SPOOFED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// A per-lab audit log so tests never touch /var/log/portguard.
fn audit_path(lab: &Lab) -> PathBuf {
    PathBuf::from(format!("/run/{}-audit/audit.jsonl", lab.id))
}

/// `lab.pg` with this lab's audit log.
fn pg(lab: &Lab, args: &[&str]) -> std::process::Output {
    let log = audit_path(lab);
    let mut v = vec!["--audit-log", log.to_str().unwrap()];
    v.extend_from_slice(args);
    lab.pg(&v)
}

fn pg_ok(lab: &Lab, args: &[&str]) -> std::process::Output {
    let o = pg(lab, args);
    assert!(
        o.status.success(),
        "portguard {args:?} failed: {}{}",
        cli::stdout(&o),
        cli::stderr(&o)
    );
    o
}

/// Removes the lab's audit directory and events lock file (also on panic).
struct AuditDir(Vec<PathBuf>);
impl Drop for AuditDir {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn audit_dir(lab: &Lab) -> AuditDir {
    AuditDir(vec![
        audit_path(lab).parent().unwrap().to_path_buf(),
        portguard::events::events_lock_path(&lab.pin_dir),
    ])
}

fn guard(lab: &Lab, vm: &Vm, extra: &[&str]) {
    pg_ok(lab, &["attach", &vm.host_if]);
    let m = f::mac_str(&vm.mac());
    let ip = vm.ip4().to_string();
    let mut args = vec!["bind", vm.host_if.as_str(), "--mac", &m, "--ip", &ip];
    args.extend_from_slice(extra);
    pg_ok(lab, &args);
}

/// UDP from `vm`'s MAC with source IP `sip` to vm2-ish MAC, padded to 80 bytes.
fn udp(smac: Mac, sip: Ipv4Addr, dmac: Mac, sport: u16) -> Vec<u8> {
    f::eth(
        dmac,
        smac,
        f::ETH_P_IP,
        &f::udp4(sip, NOBODY, sport, 9, &[0x5a; 38]),
    )
}

fn stats_entry(lab: &Lab, iface: &str) -> Value {
    let v = cli::stats_all(&lab.host, &lab.pin_dir);
    cli::entry(&v, iface)
        .unwrap_or_else(|| panic!("no stats for {iface}: {v}"))
        .clone()
}

/// A `portguard` child process in the lab's host netns, stdout read line by line.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(lab: &Lab, args: &[&str]) -> Proc {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.host))
            .arg(cli::bin())
            .arg("--pin-dir")
            .arg(&lab.pin_dir)
            .arg("--audit-log")
            .arg(audit_path(lab))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portguard");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                match l {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Proc { child, lines: rx }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit status (killing after `timeout`); returns (success, stderr).
    fn wait(mut self, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut e = String::new();
                if let Some(mut s) = self.child.stderr.take() {
                    let _ = s.read_to_string(&mut e);
                }
                return (st.success(), e);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (false, "timed out".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM first so the process can flush; then make sure.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            thread::sleep(Duration::from_millis(100));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Waits until the events reader of `lab` holds the consumer lock (its pid is in the lock file).
fn wait_reader_ready(lab: &Lab, pid: u32) {
    let lock = portguard::events::events_lock_path(&lab.pin_dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(&lock) {
            if s.trim() == pid.to_string() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "events reader {pid} did not take {}",
            lock.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn json_lines(o: &std::process::Output) -> Vec<Value> {
    cli::stdout(o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn parse_ts(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v["ts"].as_str().unwrap_or_else(|| panic!("no ts in {v}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("ts {s:?}: {e}"))
}

// ------------------------------------------------------------------ events

#[test]
fn spoof_event_arrives_with_the_right_fields() {
    let lab = Lab::new(2);
    let _ad = audit_dir(&lab);
    let (a, b) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &["--tenant", "acme"]);
    guard(&lab, b, &[]);

    let follower = Proc::spawn(&lab, &["events", "--follow", "--json", "--count", "1"]);
    wait_reader_ready(&lab, follower.pid());

    // A second consumer is refused, naming the holder.
    let o = pg(&lab, &["events", "--json"]);
    assert!(!o.status.success(), "second reader was admitted");
    assert!(cli::one_line_error(&o), "not one line: {}", cli::stderr(&o));
    assert!(
        cli::stderr(&o).contains(&format!("process {}", follower.pid())),
        "holder pid not named: {}",
        cli::stderr(&o)
    );

    let frame = udp(a.mac(), SPOOFED, b.mac(), 40000);
    let sent_at = Instant::now();
    let wall_before = chrono::Utc::now();
    a.send(std::slice::from_ref(&frame));
    let line = follower
        .lines
        .recv_timeout(Duration::from_secs(1))
        .expect("no event within a second of the spoof");
    let latency = sent_at.elapsed();
    let (ok, err) = follower.wait(Duration::from_secs(5));
    assert!(ok, "events --count 1 did not exit cleanly: {err}");

    let e: Value = serde_json::from_str(&line).unwrap_or_else(|x| panic!("{x}: {line}"));
    assert_eq!(e["iface"], a.host_if.as_str(), "{e}");
    assert_eq!(e["ifindex"], a.host_ifindex, "{e}");
    assert_eq!(e["tenant"], "acme", "{e}");
    assert_eq!(e["reason"], "ipv4_spoof", "{e}");
    assert_eq!(e["mode"], "enforce", "{e}");
    assert_eq!(e["src_mac"], f::mac_str(&a.mac()), "{e}");
    assert_eq!(e["dst_mac"], f::mac_str(&b.mac()), "{e}");
    assert_eq!(e["ethertype"], "0x0800", "{e}");
    assert!(e["vlan"].is_null(), "{e}");
    assert_eq!(e["src_ip"], SPOOFED.to_string(), "{e}");
    assert_eq!(e["dst_ip"], NOBODY.to_string(), "{e}");
    assert_eq!(e["len"], frame.len(), "{e}");
    let ts = parse_ts(&e);
    let skew = (ts.with_timezone(&chrono::Utc) - wall_before)
        .num_milliseconds()
        .abs();
    assert!(
        skew < 2000,
        "event ts {ts} is {skew} ms away from the send time"
    );
    assert!(
        e["ts"].as_str().unwrap().contains('.'),
        "ts without fraction: {e}"
    );
    eprintln!("event latency {latency:?}");

    // The lock is free again: a plain drain works (and finds nothing new).
    let o = pg_ok(&lab, &["events", "--json"]);
    assert!(json_lines(&o).is_empty(), "{}", cli::stdout(&o));

    // Monitor mode: would-drops are events with mode "monitor"; filters apply.
    let m = f::mac_str(&a.mac());
    let ip = a.ip4().to_string();
    pg_ok(
        &lab,
        &[
            "bind", &a.host_if, "--mac", &m, "--ip", &ip, "--mode", "monitor",
        ],
    );
    let mut spoof_mac = a.mac();
    spoof_mac[5] = 0x77;
    a.send(&[
        udp(spoof_mac, a.ip4(), b.mac(), 40001),
        udp(a.mac(), SPOOFED, b.mac(), 40002),
    ]);
    b.send(&[udp(b.mac(), SPOOFED, a.mac(), 40003)]);
    thread::sleep(Duration::from_millis(200));
    let o = pg_ok(
        &lab,
        &[
            "events",
            "--json",
            "--iface",
            &a.host_if,
            "--reason",
            "mac_spoof",
        ],
    );
    let evs = json_lines(&o);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["mode"], "monitor");
    assert_eq!(evs[0]["reason"], "mac_spoof");
    assert_eq!(evs[0]["src_mac"], f::mac_str(&spoof_mac));
    // The filtered-out events were consumed too (single consumer, documented).
    let o = pg_ok(&lab, &["events"]);
    assert!(cli::stdout(&o).trim().is_empty(), "{}", cli::stdout(&o));

    // Bad filters are rejected up front.
    let o = pg(&lab, &["events", "--reason", "nonsense"]);
    assert!(!o.status.success() && cli::one_line_error(&o));
}

#[test]
fn flood_is_sampled_to_the_budget() {
    let lab = Lab::new(2);
    let _ad = audit_dir(&lab);
    let (a, b) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &[]);
    guard(&lab, b, &[]);
    const N: usize = 2000;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| udp(a.mac(), SPOOFED, b.mac(), 1000 + i as u16))
        .collect();
    let t0 = Instant::now();
    a.send(&frames);
    let elapsed = t0.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(100));

    let o = pg_ok(&lab, &["events", "--json"]);
    let evs = json_lines(&o);
    let st = stats_entry(&lab, &a.host_if);
    let c = PortCounters::from_entry(&st);
    assert_eq!(c.dropped("ipv4_spoof"), N as u64, "{st}");
    assert_eq!(c.total_dropped(), N as u64, "{st}");
    let emitted = evs.len() as u64;
    let sampled_out = st["events_sampled_out"].as_u64().unwrap();
    let lost = st["events_lost"].as_u64().unwrap();
    let budget = 100.0 + 100.0 * elapsed;
    eprintln!(
        "sent {N} in {elapsed:.3}s: {emitted} events, {sampled_out} sampled out, {lost} lost (budget {budget:.1})"
    );
    assert!(
        emitted as f64 <= budget.floor() + 1.0,
        "{emitted} events exceed the budget {budget:.1}"
    );
    assert!(emitted >= 100, "burst of 100 not delivered: {emitted}");
    assert_eq!(lost, 0, "ring buffer overflowed");
    assert_eq!(sampled_out, N as u64 - emitted - lost, "{st}");
    assert!(evs.iter().all(|e| e["reason"] == "ipv4_spoof"));
}

#[test]
fn pcap_is_readable_by_tcpdump() {
    let lab = Lab::new(2);
    let _ad = audit_dir(&lab);
    let (a, b) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &[]);
    guard(&lab, b, &[]);
    let spoofs: Vec<Mac> = (0..5).map(|i| [0x02, 0xee, 0, 0, 0, 0xa1 + i]).collect();
    let frames: Vec<Vec<u8>> = spoofs
        .iter()
        .enumerate()
        .map(|(i, m)| udp(*m, a.ip4(), b.mac(), 50000 + i as u16))
        .collect();
    // One more, longer than the 128-byte capture.
    let long = f::eth(
        b.mac(),
        a.mac(),
        f::ETH_P_IP,
        &f::udp4(SPOOFED, NOBODY, 5, 9, &[0x33; 300]),
    );
    a.send(&frames);
    a.send(std::slice::from_ref(&long));
    thread::sleep(Duration::from_millis(100));

    let dir = PathBuf::from(format!("/run/{}-pcap", lab.id));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = AuditDir(vec![dir.clone()]);
    let file = dir.join("drops.pcap");
    let o = pg_ok(&lab, &["events", "--pcap", file.to_str().unwrap()]);
    assert_eq!(cli::stdout(&o).lines().count(), 6, "{}", cli::stdout(&o));

    let td = Command::new("tcpdump")
        .args(["-r", file.to_str().unwrap(), "-n", "-e", "-nn"])
        .output()
        .expect("tcpdump");
    let out = String::from_utf8_lossy(&td.stdout);
    assert!(
        td.status.success(),
        "tcpdump -r failed: {}",
        String::from_utf8_lossy(&td.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "tcpdump output:\n{out}");
    for m in &spoofs {
        let s = f::mac_str(m);
        assert!(
            lines.iter().filter(|l| l.contains(&s)).count() == 1,
            "{s} not in tcpdump output:\n{out}"
        );
    }
    assert!(out.contains(&SPOOFED.to_string()), "{out}");

    // Byte-exact: the records are the sent frames (the long one cut at 128 bytes).
    let bytes = std::fs::read(&file).unwrap();
    let (lt, recs) = portguard::pcap::parse(&bytes).unwrap();
    assert_eq!(lt, 1);
    assert_eq!(recs.len(), 6);
    for (r, fr) in recs.iter().zip(frames.iter()) {
        assert_eq!(&r.data, fr);
        assert_eq!(r.orig_len as usize, fr.len());
    }
    assert_eq!(recs[5].data, long[..128].to_vec());
    assert_eq!(recs[5].orig_len as usize, long.len());
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap() as u64;
    assert!(recs
        .iter()
        .all(|r| now.abs_diff(r.wall_ns) < 30_000_000_000));
}

// ----------------------------------------------------------------- metrics

/// Runs `f` on a thread inside netns `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let nsf = File::open(&path).unwrap();
        // SAFETY: valid fd; affects only this thread.
        assert_eq!(
            unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns {path}"
        );
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// `GET path` on 127.0.0.1:port in netns `ns`: (status, body).
fn http_get(ns: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let path = path.to_string();
    in_netns(ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_string()))
    })
}

type Series = HashMap<(String, Vec<(String, String)>), f64>;

fn parse_metrics(body: &str) -> (Series, HashMap<String, String>) {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus text parses");
    let sample_lines = body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines,
        "some sample lines were not understood:\n{body}"
    );
    let mut types = HashMap::new();
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').unwrap();
            types.insert(n.to_string(), t.to_string());
        }
    }
    let mut out = HashMap::new();
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v) => {
                assert_eq!(types.get(&s.metric).map(String::as_str), Some("counter"));
                v
            }
            prometheus_parse::Value::Gauge(v) => {
                assert_eq!(types.get(&s.metric).map(String::as_str), Some("gauge"));
                v
            }
            other => panic!("{}: unexpected value {other:?}", s.metric),
        };
        assert!(
            scrape.docs.contains_key(&s.metric),
            "{} has no HELP",
            s.metric
        );
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let key = (s.metric.clone(), labels);
        assert!(
            out.insert(key, v).is_none(),
            "duplicate series {}",
            s.metric
        );
    }
    (out, types)
}

fn get(series: &Series, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    series.get(&(metric.to_string(), l)).copied()
}

#[test]
fn metrics_parse_and_equal_stats() {
    let lab = Lab::new(3);
    let _ad = audit_dir(&lab);
    let (a, b, c) = (lab.vm(1), lab.vm(2), lab.vm(3));
    guard(&lab, a, &["--tenant", "red"]);
    guard(&lab, b, &["--tenant", "blue", "--mode", "monitor"]);
    pg_ok(&lab, &["attach", &c.host_if]); // attached, unbound
    let mut spoof = a.mac();
    spoof[5] = 0x55;
    a.send(&[
        udp(a.mac(), SPOOFED, b.mac(), 1),
        udp(spoof, a.ip4(), b.mac(), 2),
        udp(a.mac(), a.ip4(), b.mac(), 3),
    ]);
    b.send(&[
        udp(b.mac(), SPOOFED, a.mac(), 4),
        udp(b.mac(), b.ip4(), a.mac(), 5),
    ]);
    c.send(&[udp(c.mac(), c.ip4(), a.mac(), 6)]);
    thread::sleep(Duration::from_millis(200));

    let server = Proc::spawn(&lab, &["metrics", "--listen", "127.0.0.1:9469"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(&lab.host, 9469, "/metrics") {
            Ok((200, body)) => break body,
            Ok((st, body)) => panic!("/metrics: HTTP {st}: {body}"),
            Err(e) => {
                assert!(Instant::now() < deadline, "metrics server not up: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let stats = cli::stats_all(&lab.host, &lab.pin_dir);
    let (series, _) = parse_metrics(&body);

    assert_eq!(get(&series, "portguard_bindings", &[]), Some(2.0), "{body}");
    assert_eq!(
        get(&series, "portguard_attached_ports", &[]),
        Some(3.0),
        "{body}"
    );
    for e in stats.as_array().unwrap() {
        let iface = e["iface"].as_str().unwrap();
        let tenant = e["tenant"].as_str().unwrap();
        let mode = e["mode"].as_str().unwrap();
        let base = [("iface", iface), ("tenant", tenant)];
        let with_mode = [("iface", iface), ("tenant", tenant), ("mode", mode)];
        assert_eq!(
            get(&series, "portguard_passed_packets_total", &with_mode),
            e["passed"]["packets"].as_f64(),
            "{iface} passed packets"
        );
        assert_eq!(
            get(&series, "portguard_passed_bytes_total", &with_mode),
            e["passed"]["bytes"].as_f64(),
            "{iface} passed bytes"
        );
        for (key, m) in [("dropped", "enforce"), ("would_drop", "monitor")] {
            for (reason, cnt) in e[key].as_object().unwrap() {
                let l = [
                    ("iface", iface),
                    ("tenant", tenant),
                    ("reason", reason.as_str()),
                    ("mode", m),
                ];
                let want_p = cnt["packets"].as_f64().unwrap();
                let want_b = cnt["bytes"].as_f64().unwrap();
                let got_p = get(&series, "portguard_dropped_packets_total", &l);
                let got_b = get(&series, "portguard_dropped_bytes_total", &l);
                if want_p > 0.0 {
                    assert_eq!(got_p, Some(want_p), "{iface} {key}.{reason}");
                    assert_eq!(got_b, Some(want_b), "{iface} {key}.{reason} bytes");
                } else {
                    assert!(got_p.unwrap_or(0.0) == 0.0, "{iface} {key}.{reason}");
                }
            }
        }
        assert_eq!(
            get(&series, "portguard_events_sampled_out_total", &base),
            e["events_sampled_out"].as_f64()
        );
        assert_eq!(
            get(&series, "portguard_events_lost_total", &base),
            e["events_lost"].as_f64()
        );
    }
    // The numbers are the ones the traffic produced.
    let red = [("iface", a.host_if.as_str()), ("tenant", "red")];
    let l = |reason: &'static str, mode: &'static str| {
        let mut v = red.to_vec();
        v.push(("reason", reason));
        v.push(("mode", mode));
        v
    };
    assert_eq!(
        get(
            &series,
            "portguard_dropped_packets_total",
            &l("ipv4_spoof", "enforce")
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            &series,
            "portguard_dropped_packets_total",
            &l("mac_spoof", "enforce")
        ),
        Some(1.0)
    );
    let blue = [
        ("iface", b.host_if.as_str()),
        ("tenant", "blue"),
        ("reason", "ipv4_spoof"),
        ("mode", "monitor"),
    ];
    assert_eq!(
        get(&series, "portguard_dropped_packets_total", &blue),
        Some(1.0)
    );
    let unb = [
        ("iface", c.host_if.as_str()),
        ("tenant", ""),
        ("reason", "unbound_port"),
        ("mode", "enforce"),
    ];
    assert_eq!(
        get(&series, "portguard_dropped_packets_total", &unb),
        Some(1.0)
    );

    assert_eq!(http_get(&lab.host, 9469, "/nope").unwrap().0, 404);
    // `--once` prints the same exposition.
    let once = pg_ok(&lab, &["metrics", "--once"]);
    let (s2, _) = parse_metrics(&cli::stdout(&once));
    assert_eq!(s2, series);
    drop(server);
}

// ------------------------------------------------------------------ stats

#[test]
fn stats_by_tenant() {
    let lab = Lab::new(3);
    let _ad = audit_dir(&lab);
    let (a, b, c) = (lab.vm(1), lab.vm(2), lab.vm(3));
    guard(&lab, a, &["--tenant", "red"]);
    guard(&lab, b, &["--tenant", "red"]);
    guard(&lab, c, &["--tenant", "blue"]);
    a.send(&[
        udp(a.mac(), SPOOFED, c.mac(), 1),
        udp(a.mac(), SPOOFED, c.mac(), 2),
    ]);
    b.send(&[udp(b.mac(), SPOOFED, c.mac(), 3)]);
    c.send(&[udp(c.mac(), SPOOFED, a.mac(), 4)]);
    thread::sleep(Duration::from_millis(100));

    let red = cli::json(&pg_ok(&lab, &["stats", "--tenant", "red", "--json"]));
    let ifaces: Vec<&str> = red
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["iface"].as_str().unwrap())
        .collect();
    assert_eq!(ifaces, vec![a.host_if.as_str(), b.host_if.as_str()]);

    let by = cli::json(&pg_ok(&lab, &["stats", "--by", "tenant", "--json"]));
    let rows = by.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{by}");
    let row = |t: &str| rows.iter().find(|r| r["tenant"] == t).unwrap().clone();
    let r = row("red");
    assert!(r.get("iface").is_none());
    assert_eq!(r["ports"], 2);
    assert_eq!(r["dropped"]["ipv4_spoof"]["packets"], 3);
    let per_port: u64 = red
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["passed"]["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(r["passed"]["packets"].as_u64().unwrap(), per_port);
    assert_eq!(row("blue")["dropped"]["ipv4_spoof"]["packets"], 1);

    let one = cli::json(&pg_ok(
        &lab,
        &["stats", "--by", "tenant", "--tenant", "blue", "--json"],
    ));
    assert_eq!(one.as_array().unwrap().len(), 1);
    let table = cli::stdout(&pg_ok(&lab, &["stats", "--by", "tenant"]));
    assert!(table.starts_with("TENANT"), "{table}");
    // --watch keeps working per tenant: one JSON array per interval, with rates.
    let w = Proc::spawn(
        &lab,
        &["stats", "--by", "tenant", "--watch", "0.2", "--json"],
    );
    let line = w
        .lines
        .recv_timeout(Duration::from_secs(5))
        .expect("stats --watch printed nothing");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    assert!(v[0]["rate"]["passed_pps"].is_number(), "{v}");
    drop(w);
    let o = pg(&lab, &["stats", "--tenant", "green"]);
    assert!(
        !o.status.success() && cli::one_line_error(&o),
        "{}",
        cli::stderr(&o)
    );
}

// ------------------------------------------------------------------ audit

fn audit_entries(lab: &Lab) -> Vec<Value> {
    let text = std::fs::read_to_string(audit_path(lab)).expect("audit log exists");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line ({e}): {l}")))
        .collect()
}

#[test]
fn audit_log_records_changes() {
    let lab = Lab::new(1);
    let _ad = audit_dir(&lab);
    let a = lab.vm(1);
    let dir = audit_path(&lab).parent().unwrap().to_path_buf();
    assert!(!Path::new(&dir).exists());
    let m = f::mac_str(&a.mac());
    pg_ok(&lab, &["attach", &a.host_if]);
    pg_ok(
        &lab,
        &[
            "bind",
            &a.host_if,
            "--mac",
            &m,
            "--ip",
            "192.0.2.1",
            "--tenant",
            "acme",
        ],
    );
    pg_ok(
        &lab,
        &[
            "bind",
            &a.host_if,
            "--mac",
            &m,
            "--ip",
            "192.0.2.2",
            "--tenant",
            "acme",
        ],
    );
    let bad = pg(
        &lab,
        &[
            "bind",
            &a.host_if,
            "--mac",
            "not-a-mac",
            "--ip",
            "192.0.2.3",
        ],
    );
    assert!(!bad.status.success());
    let missing = pg(&lab, &["bind", "nosuch0", "--mac", &m, "--ip", "192.0.2.3"]);
    assert!(!missing.status.success());
    pg_ok(&lab, &["unbind", &a.host_if]);
    pg_ok(&lab, &["detach", &a.host_if]);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750, "audit dir mode {mode:o}");

    let e = audit_entries(&lab);
    let cmds: Vec<(&str, &str)> = e
        .iter()
        .map(|x| {
            (
                x["command"].as_str().unwrap(),
                x["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cmds,
        vec![
            ("attach", "ok"),
            ("bind", "ok"),
            ("bind", "ok"),
            ("bind", "failed"),
            ("bind", "failed"),
            ("unbind", "ok"),
            ("detach", "ok"),
        ],
        "{e:#?}"
    );
    for x in &e {
        parse_ts(x);
        assert_eq!(x["uid"], 0);
        assert_eq!(x["user"], "root");
        assert!(x.get("before").is_some() && x.get("after").is_some(), "{x}");
    }
    // attach: no record before, an attached unbound port after.
    assert!(e[0]["before"].is_null());
    assert_eq!(e[0]["after"]["attached"], true);
    assert_eq!(e[0]["after"]["bound"], false);
    // bind: before = the unbound record, after = the binding.
    assert_eq!(e[1]["iface"], a.host_if.as_str());
    assert_eq!(e[1]["before"]["bound"], false);
    assert_eq!(e[1]["after"]["mac"], m.as_str());
    assert_eq!(e[1]["after"]["ips"], serde_json::json!(["192.0.2.1"]));
    assert_eq!(e[1]["after"]["tenant"], "acme");
    // rebind: before/after show the change.
    assert_eq!(e[2]["before"]["ips"], serde_json::json!(["192.0.2.1"]));
    assert_eq!(e[2]["after"]["ips"], serde_json::json!(["192.0.2.2"]));
    // failed binds carry the error; nothing changed.
    assert!(
        e[3]["error"].as_str().unwrap().contains("not-a-mac"),
        "{}",
        e[3]
    );
    assert!(e[3]["after"].is_null());
    assert!(
        e[4]["error"].as_str().unwrap().contains("nosuch0"),
        "{}",
        e[4]
    );
    assert_eq!(e[4]["iface"], "nosuch0");
    assert!(e[1..3].iter().all(|x| x.get("error").is_none()));
    // unbind: binding before, attached unbound record after.
    assert_eq!(e[5]["before"]["ips"], serde_json::json!(["192.0.2.2"]));
    assert_eq!(e[5]["after"]["bound"], false);
    // detach: gone afterwards.
    assert!(e[6]["after"].is_null());

    // `portguard audit` reads it back, with filters.
    let all = json_lines(&pg_ok(&lab, &["audit", "--json"]));
    assert_eq!(all, e);
    let vm = json_lines(&pg_ok(&lab, &["audit", "--json", "--iface", "nosuch0"]));
    assert_eq!(vm.len(), 1);
    let recent = json_lines(&pg_ok(&lab, &["audit", "--json", "--since", "1h"]));
    assert_eq!(recent.len(), 7);
    let future = json_lines(&pg_ok(
        &lab,
        &["audit", "--json", "--since", "2999-01-01T00:00:00Z"],
    ));
    assert!(future.is_empty());
    let human = cli::stdout(&pg_ok(&lab, &["audit"]));
    assert_eq!(human.lines().count(), 7, "{human}");
    assert!(human.contains("failed"), "{human}");
    let o = pg(&lab, &["audit", "--since", "yesterday"]);
    assert!(!o.status.success() && cli::one_line_error(&o));
}

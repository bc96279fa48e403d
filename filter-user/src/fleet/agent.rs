//! `portguard agent`: converges this host's pinned state to its bindings
//! in etcd (docs/fleet.md).
//!
//! List the host's prefix (paged, one revision) -> plan and apply against
//! the kernel with removal of whatever the list does not have -> watch from
//! revision+1 with require-leader, one atomic rebind per event. A cancelled
//! watch (compaction, permission denied, no leader) -> list again; other
//! watch errors -> watch again from the last revision after a jittered
//! backoff; a periodic list catches drift. Nothing is removed except after a
//! complete list, and an unreachable store changes nothing in the kernel.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use etcd_client::{Client, EventType};
use tokio::{
    sync::mpsc::{unbounded_channel, UnboundedReceiver},
    time::sleep_until,
};

use super::{
    converge::{ConvergeError, Host, PortOutcome, PortState},
    keys, snapshot,
    status::{AgentStatus, PortStatus},
    store::{self, StoreConfig, StoreError, Write},
    value,
};
use crate::{
    lifecycle::{netlink, LinkEvents, Received},
    state::{self, Port},
};

/// Everything `portguard agent` is told.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub host: String,
    pub store: StoreConfig,
    pub pin_dir: PathBuf,
    pub audit_log: PathBuf,
    /// Capacity of the maps if it creates them (`--max-ports`).
    pub max_ports: Option<u32>,
    /// Where the fail-static snapshot is kept (None: no snapshot).
    pub snapshot: Option<PathBuf>,
    /// Full list for drift, this often (jittered +-10%).
    pub relist_every: Duration,
    /// Pending ports (interface absent) and recreated interfaces are checked this often.
    pub recheck_every: Duration,
    /// Status keys are written at most this often (changes are coalesced).
    pub status_every: Duration,
    /// TTL of the lease the agent key is on, seconds.
    pub lease_ttl: i64,
    /// Keys per page when listing.
    pub page_size: i64,
}

impl AgentOptions {
    pub fn new(host: &str, store: StoreConfig, pin_dir: PathBuf, audit_log: PathBuf) -> Self {
        AgentOptions {
            host: host.to_string(),
            store,
            pin_dir,
            audit_log,
            max_ports: None,
            snapshot: None,
            relist_every: Duration::from_secs(300),
            recheck_every: Duration::from_secs(2),
            status_every: Duration::from_millis(100),
            lease_ttl: 15,
            page_size: 1000,
        }
    }
}

/// Why the agent could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Host(#[from] ConvergeError),
    #[error("{0}")]
    Config(String),
}

/// Link events from rtnetlink, read on a thread of their own (the socket
/// is blocking; lifecycle's `forward`) and handed to the agent's loop. The
/// thread ends when the agent's receiver is dropped.
fn link_events() -> UnboundedReceiver<Received> {
    let (tx, rx) = unbounded_channel();
    match LinkEvents::subscribe() {
        Ok(ev) => {
            std::thread::spawn(move || {
                let never = std::sync::atomic::AtomicBool::new(false);
                netlink::forward(ev, &never, |r| {
                    let r = r.unwrap_or_else(|e| {
                        log(format!("link events: {e}"));
                        // Events may be lost: the reconciler re-reads every link.
                        Received::Overrun
                    });
                    tx.send(r).is_ok()
                });
            });
        }
        // Ports whose interface appears later wait for the next list.
        Err(e) => log(format!("no link events: {e}")),
    }
    rx
}

fn log(msg: impl AsRef<str>) {
    eprintln!("portguard agent: {}", msg.as_ref());
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One binding as last seen in the store.
#[derive(Clone, Debug)]
struct Entry {
    mod_revision: i64,
    key: String,
    spec: Result<Port, String>,
    /// For an invalid value: the last valid one, which stays enforced
    /// (an orchestrator's typo does not unbind a running VM).
    last_good: Option<Port>,
}

impl Entry {
    fn effective(&self) -> Option<&Port> {
        self.spec.as_ref().ok().or(self.last_good.as_ref())
    }
}

/// Exponential backoff with full jitter (xorshift; no need for a crypto RNG).
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ ((std::process::id() as u64) << 32);
        Backoff {
            next: min,
            min,
            max,
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A delay in [next/2, next], then doubles `next` up to `max`.
    fn delay(&mut self) -> Duration {
        let d = self.next.mul_f64(0.5 + 0.5 * self.random());
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.min;
    }

    /// `d` +-10%.
    fn jitter(&mut self, d: Duration) -> Duration {
        d.mul_f64(0.9 + 0.2 * self.random())
    }
}

struct Agent {
    o: AgentOptions,
    prefix: String,
    host: Host,
    client: Client,
    desired: BTreeMap<String, Entry>,
    status: BTreeMap<String, PortStatus>,
    /// Port status keys as the store has them (None: unknown, read before writing).
    written: Option<BTreeMap<String, Option<PortStatus>>>,
    agent: AgentStatus,
    agent_written: Option<AgentStatus>,
    lease: Option<i64>,
    /// The revision the kernel state reflects.
    revision: i64,
    /// A complete list has been applied since the start.
    synced_once: bool,
    snapshot_dirty: bool,
    /// The programs are being verified or are ([`Host::warm_up`], once in sync).
    warm: bool,
    backoff: Backoff,
}

/// Runs the agent until `shutdown` completes. Returns an error only when
/// it cannot start (bad options, no pin directory); store outages are waited out.
pub async fn run(
    o: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    keys::check_name("host", &o.host).map_err(|e| AgentError::Config(e.to_string()))?;
    let host = Host::new(&o.pin_dir, &o.audit_log, o.max_ports)?;
    // Subscribed before the first list, so no link change falls between.
    let links = link_events();
    let client = store::connect(&o.store, true).await?;
    let mut a = Agent {
        prefix: keys::ports_prefix(&o.host),
        agent: AgentStatus {
            host: o.host.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: now(),
            port_capacity: host.port_capacity(),
            ..Default::default()
        },
        o,
        host,
        client,
        desired: BTreeMap::new(),
        status: BTreeMap::new(),
        written: None,
        agent_written: None,
        lease: None,
        revision: 0,
        synced_once: false,
        snapshot_dirty: false,
        warm: false,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
    };
    let mut links = links;
    tokio::select! {
        _ = a.run_loop(&mut links) => Ok(()),
        _ = shutdown => {
            a.shutdown().await;
            Ok(())
        }
    }
}

impl Agent {
    async fn run_loop(&mut self, links: &mut UnboundedReceiver<Received>) {
        let mut tried_snapshot = false;
        loop {
            match self.list_and_sync().await {
                Ok(()) => self.backoff.reset(),
                Err(e) => {
                    self.store_error(&e.to_string());
                    if !tried_snapshot && !self.synced_once {
                        tried_snapshot = true;
                        self.apply_snapshot();
                    }
                    let d = self.backoff.delay();
                    tokio::time::sleep(d).await;
                    continue;
                }
            }
            self.watch_until_relist(links).await;
        }
    }

    /// A failed list or watch: the kernel state may lag the store.
    fn store_error(&mut self, msg: &str) {
        self.count_error(msg);
        self.agent.in_sync = false;
    }

    /// A failed status write or lease renewal: reported, nothing else.
    fn count_error(&mut self, msg: &str) {
        log(format!("store: {msg}"));
        self.agent.store_errors += 1;
        self.agent.last_error = Some(msg.to_string());
        self.agent.last_error_at = Some(now());
    }

    /// The store is unreachable at start: enforce the last synced state.
    fn apply_snapshot(&mut self) {
        let Some(path) = self.o.snapshot.clone() else {
            return;
        };
        if !path.exists() {
            return;
        }
        match state::load(&path).map(|st| self.host.apply_snapshot(st)) {
            Ok(n) => log(format!(
                "store unreachable: applied snapshot {} ({n} port(s) changed)",
                path.display()
            )),
            Err(e) => log(format!("cannot apply snapshot {}: {e}", path.display())),
        }
    }

    async fn list_and_sync(&mut self) -> Result<(), StoreError> {
        let listing = store::list(&self.client, &self.prefix, self.o.page_size).await?;
        let mut desired = BTreeMap::new();
        for kv in listing.kvs {
            let Some(id) = keys::id_under(&self.prefix, &kv.key) else {
                log(format!(
                    "ignoring key {} (not a port key)",
                    String::from_utf8_lossy(&kv.key)
                ));
                continue;
            };
            let prev = self.desired.get(id);
            desired.insert(
                id.to_string(),
                self.entry(&kv.key, &kv.value, kv.mod_revision, prev),
            );
        }
        self.desired = desired;
        self.revision = listing.revision;
        self.agent.lists += 1;
        let ids: BTreeSet<String> = self.desired.keys().cloned().collect();
        self.converge(&ids, &BTreeSet::new(), true);
        // The plan and outcomes of thousands of ports are freed by now.
        crate::sys::trim_heap();
        // What the store has may differ from what we think (another agent
        // run, a restart): read it again before the next write.
        self.written = None;
        self.synced_once = true;
        self.snapshot_dirty = true;
        self.agent.synced_revision = self.revision;
        let _ = self.flush().await;
        Ok(())
    }

    fn entry(&self, key: &[u8], val: &[u8], rev: i64, prev: Option<&Entry>) -> Entry {
        let key = String::from_utf8_lossy(key).into_owned();
        let spec = value::parse(&key, val).map_err(|e| e.0);
        let last_good = match (&spec, prev) {
            (Err(_), Some(p)) => p.effective().cloned(),
            _ => None,
        };
        Entry {
            mod_revision: rev,
            key,
            spec,
            last_good,
        }
    }

    /// The id owning each interface: the smallest id naming it.
    fn owners(&self) -> BTreeMap<&str, &str> {
        let mut m = BTreeMap::new();
        for (id, e) in &self.desired {
            if let Some(s) = e.effective() {
                m.entry(s.iface.as_str()).or_insert(id.as_str());
            }
        }
        m
    }

    /// Converges the interfaces `ifaces` (each to the port owning it, or to
    /// nothing), then sets the status of the ports `ids`. `all`: after a
    /// complete list, every port and the removal of everything else.
    fn converge(&mut self, ids: &BTreeSet<String>, ifaces: &BTreeSet<String>, all: bool) {
        let owners: BTreeMap<String, String> = self
            .owners()
            .into_iter()
            .map(|(i, id)| (i.to_string(), id.to_string()))
            .collect();
        let spec = |id: &str| self.desired.get(id).and_then(|e| e.effective()).cloned();
        let result = if all {
            let ports: Vec<Port> = owners.values().filter_map(|id| spec(id)).collect();
            self.host.set_all(ports)
        } else {
            let mut r = Ok(());
            for i in ifaces {
                let step = match owners.get(i).and_then(|id| spec(id)) {
                    Some(p) => self.host.upsert(p),
                    None => self.host.remove(i),
                };
                if step.is_err() {
                    r = step;
                }
            }
            r
        };
        if let Err(err) = &result {
            // Per-port failures are in the ports' status; this is the summary.
            log(format!("converging: {err}"));
            self.agent.last_error = Some(err.to_string());
            self.agent.last_error_at = Some(now());
        }
        self.refresh_status(ids, &owners);
        if all {
            self.status.retain(|id, _| self.desired.contains_key(id));
        }
        self.snapshot_dirty = true;
    }

    /// Recomputes the status of the ports `ids` from the desired state and
    /// where the reconciler says their interfaces stand.
    fn refresh_status(&mut self, ids: &BTreeSet<String>, owners: &BTreeMap<String, String>) {
        for id in ids {
            let Some(e) = self.desired.get(id) else {
                self.status.remove(id);
                continue;
            };
            let st = match e.effective() {
                None => {
                    let msg = e.spec.as_ref().err().cloned().unwrap_or_default();
                    PortStatus::new(e.mod_revision, "", &PortOutcome::error(msg))
                }
                Some(s) => match owners.get(&s.iface) {
                    Some(owner) if owner != id => {
                        let msg = format!(
                            "{}: interface {} is already used by port {owner}",
                            e.key, s.iface
                        );
                        PortStatus::new(e.mod_revision, &s.iface, &PortOutcome::error(msg))
                    }
                    _ => {
                        let mut st =
                            PortStatus::new(e.mod_revision, &s.iface, &self.host.outcome(&s.iface));
                        if let Err(msg) = &e.spec {
                            // The last valid binding stays; the new value is refused.
                            st.state = PortState::Error;
                            st.message = Some(format!("{msg} (the previous binding stays)"));
                        }
                        st
                    }
                },
            };
            self.status.insert(id.clone(), st);
        }
    }

    fn refresh_all(&mut self) {
        let owners: BTreeMap<String, String> = self
            .owners()
            .into_iter()
            .map(|(i, id)| (i.to_string(), id.to_string()))
            .collect();
        let ids: BTreeSet<String> = self.desired.keys().cloned().collect();
        self.refresh_status(&ids, &owners);
    }

    fn on_put(&mut self, key: &[u8], val: &[u8], rev: i64) {
        let Some(id) = keys::id_under(&self.prefix, key).map(str::to_string) else {
            return;
        };
        let prev = self.desired.get(&id);
        let old_iface = prev.and_then(|p| p.effective()).map(|s| s.iface.clone());
        let e = self.entry(key, val, rev, prev);
        let new_iface = e.effective().map(|s| s.iface.clone());
        self.desired.insert(id.clone(), e);
        let ifaces: BTreeSet<String> = [old_iface, new_iface].into_iter().flatten().collect();
        let ids = self.sharing(&id, &ifaces);
        self.converge(&ids, &ifaces, false);
    }

    fn on_delete(&mut self, key: &[u8]) {
        let Some(id) = keys::id_under(&self.prefix, key).map(str::to_string) else {
            return;
        };
        let Some(prev) = self.desired.remove(&id) else {
            return;
        };
        let ifaces: BTreeSet<String> = prev
            .effective()
            .map(|s| s.iface.clone())
            .into_iter()
            .collect();
        let ids = self.sharing(&id, &ifaces);
        self.converge(&ids, &ifaces, false);
    }

    /// `id` plus every port naming one of `ifaces` (their owner may change).
    fn sharing(&self, id: &str, ifaces: &BTreeSet<String>) -> BTreeSet<String> {
        let mut ids = BTreeSet::from([id.to_string()]);
        for (other, e) in &self.desired {
            if e.effective().is_some_and(|s| ifaces.contains(&s.iface)) {
                ids.insert(other.clone());
            }
        }
        ids
    }

    /// Link events: the reconciler binds and attaches ports whose interface
    /// appeared (or was recreated), and forgets records of deleted ones.
    fn on_links(&mut self, r: Received) {
        let res = match r {
            Received::Events(evs) => {
                let mut res = Ok(());
                for ev in &evs {
                    if let Err(e) = self.host.on_link(ev) {
                        res = Err(e);
                    }
                }
                res
            }
            Received::Overrun => self.host.resync(),
            Received::Timeout => return,
        };
        if let Err(e) = res {
            log(format!("link event: {e}"));
        }
        self.refresh_all();
    }

    /// Ports whose kernel change failed are tried again (a refused value
    /// waits for a new value instead).
    fn recheck(&mut self) {
        let ifaces: BTreeSet<String> = self
            .status
            .iter()
            .filter(|(id, st)| {
                st.state == PortState::Error
                    && self.desired.get(*id).is_some_and(|e| e.spec.is_ok())
                    && !st.iface.is_empty()
            })
            .map(|(_, st)| st.iface.clone())
            .collect();
        if ifaces.is_empty() {
            return;
        }
        let mut ids = BTreeSet::new();
        for i in &ifaces {
            ids.extend(self.sharing("", &BTreeSet::from([i.clone()])));
        }
        ids.remove("");
        self.converge(&ids, &ifaces, false);
    }

    /// Watches until a list is needed (cancelled watch, periodic relist).
    async fn watch_until_relist(&mut self, links: &mut UnboundedReceiver<Received>) {
        let relist_in = self.backoff.jitter(self.o.relist_every);
        let relist_at = Instant::now() + relist_in;
        let mut recheck_at = Instant::now() + self.o.recheck_every;
        let mut keepalive_at = Instant::now() + self.keepalive_every();
        let mut flush_at: Option<Instant> = None;
        let mut last_flush = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let mut ws = match store::watch(&self.client, &self.prefix, self.revision + 1).await {
                Ok(ws) => ws,
                Err(e) => {
                    self.store_error(&e.to_string());
                    tokio::time::sleep(backoff.delay()).await;
                    if Instant::now() >= relist_at {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let flush_deadline = flush_at.unwrap_or(relist_at);
                tokio::select! {
                    m = ws.message() => match m {
                        Ok(Some(resp)) => {
                            if resp.canceled() {
                                let why = if resp.compact_revision() > 0 {
                                    format!("watch cancelled: revision {} compacted (oldest {})", self.revision + 1, resp.compact_revision())
                                } else {
                                    format!("watch cancelled: {}", resp.cancel_reason())
                                };
                                self.store_error(&why);
                                let _ = self.flush().await;
                                return;
                            }
                            if resp.created() {
                                backoff.reset();
                                self.agent.in_sync = true;
                                if !self.warm {
                                    // In sync first (the first sync verified only if it
                                    // attached); then the verifier, off this thread.
                                    let _ = self.flush().await;
                                    self.host.warm_up();
                                    self.warm = true;
                                }
                                flush_at.get_or_insert(Instant::now());
                            }
                            let header_rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                            for ev in resp.events() {
                                let Some(kv) = ev.kv() else { continue };
                                match ev.event_type() {
                                    EventType::Put => self.on_put(kv.key(), kv.value(), kv.mod_revision()),
                                    EventType::Delete => self.on_delete(kv.key()),
                                }
                                self.revision = self.revision.max(kv.mod_revision());
                            }
                            if resp.events().is_empty() && !resp.created() {
                                // A progress notification: nothing of ours changed up to here.
                                self.revision = self.revision.max(header_rev);
                            }
                            if self.agent.synced_revision != self.revision || !resp.events().is_empty() {
                                self.agent.synced_revision = self.revision;
                                if flush_at.is_none() {
                                    flush_at = Some((last_flush + self.o.status_every).max(Instant::now()));
                                }
                            }
                        }
                        Ok(None) => {
                            self.store_error("watch stream ended");
                            break;
                        }
                        Err(e) => {
                            self.store_error(&format!("watch: {e}"));
                            break;
                        }
                    },
                    Some(r) = links.recv() => {
                        let before = self.status.clone();
                        self.on_links(r);
                        if before != self.status {
                            flush_at.get_or_insert(Instant::now());
                        }
                    }
                    _ = sleep_until(relist_at.into()) => return,
                    _ = sleep_until(recheck_at.into()) => {
                        recheck_at = Instant::now() + self.o.recheck_every;
                        let before = self.status.clone();
                        self.recheck();
                        if before != self.status || self.agent_written.is_none() || self.written.is_none() {
                            flush_at.get_or_insert(Instant::now());
                        }
                    }
                    _ = sleep_until(keepalive_at.into()) => {
                        keepalive_at = Instant::now() + self.keepalive_every();
                        self.keepalive().await;
                    }
                    _ = sleep_until(flush_deadline.into()), if flush_at.is_some() => {
                        flush_at = None;
                        last_flush = Instant::now();
                        if self.flush().await.is_err() {
                            // Retried later; the kernel state does not depend on it.
                            flush_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
            }
            tokio::time::sleep(backoff.delay()).await;
        }
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs((self.o.lease_ttl.max(3) / 3) as u64)
    }

    async fn keepalive(&mut self) {
        let Some(id) = self.lease else {
            return;
        };
        let r = store::call("renewing the status lease", || {
            let mut c = self.client.clone();
            async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                stream.message().await
            }
        })
        .await;
        match r {
            Ok(Some(resp)) if resp.ttl() > 0 => {}
            Ok(_) => {
                // Expired (an outage longer than the TTL): a new lease and agent key.
                self.lease = None;
                self.agent_written = None;
                let _ = self.flush().await;
            }
            Err(e) => self.count_error(&e.to_string()),
        }
    }

    fn agent_status(&self) -> AgentStatus {
        let mut a = self.agent.clone();
        a.ports = self.desired.len();
        a.enforced = self.count(PortState::Enforced);
        a.pending = self.count(PortState::Pending);
        a.error = self.count(PortState::Error);
        a.changes = self.host.changes();
        a
    }

    fn count(&self, s: PortState) -> usize {
        self.status.values().filter(|p| p.state == s).count()
    }

    /// Writes what changed: port status keys, the agent key, the snapshot.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.snapshot_dirty && self.synced_once {
            if let Some(path) = &self.o.snapshot {
                let owners = self.owners();
                let specs = owners
                    .values()
                    .filter_map(|id| self.desired.get(*id).and_then(|e| e.effective()));
                match snapshot::write(path, specs) {
                    Ok(()) => self.snapshot_dirty = false,
                    Err(e) => log(e.to_string()),
                }
            }
        }
        let r = self.write_status().await;
        if let Err(e) = &r {
            if e.to_string().contains("lease not found") {
                // Expired while we could not renew it: a new lease next time.
                self.lease = None;
                self.agent_written = None;
            }
            self.count_error(&e.to_string());
        }
        r
    }

    async fn write_status(&mut self) -> Result<(), StoreError> {
        if self.written.is_none() {
            let l = store::list(
                &self.client,
                &keys::port_status_prefix(&self.o.host),
                self.o.page_size,
            )
            .await?;
            let pfx = keys::port_status_prefix(&self.o.host);
            let mut w = BTreeMap::new();
            for kv in l.kvs {
                if let Some(id) = keys::id_under(&pfx, &kv.key) {
                    w.insert(id.to_string(), serde_json::from_slice(&kv.value).ok());
                }
            }
            self.written = Some(w);
        }
        let written = self.written.as_ref().expect("read above");
        let mut writes = Vec::new();
        for (id, st) in &self.status {
            if written.get(id).and_then(|w| w.as_ref()) != Some(st) {
                writes.push(Write::Put {
                    key: keys::port_status_key(&self.o.host, id),
                    value: serde_json::to_string(st).expect("serializable"),
                    lease: None,
                });
            }
        }
        for id in written.keys() {
            if !self.status.contains_key(id) {
                writes.push(Write::Delete(keys::port_status_key(&self.o.host, id)));
            }
        }
        let agent = self.agent_status();
        let agent_changed = self.agent_written.as_ref() != Some(&agent);
        let mut agent_write = None;
        if agent_changed {
            if self.lease.is_none() {
                let ttl = self.o.lease_ttl;
                let g = store::call("granting the status lease", || {
                    let mut c = self.client.clone();
                    async move { c.lease_grant(ttl, None).await }
                })
                .await?;
                self.lease = Some(g.id());
            }
            let mut v = serde_json::to_value(&agent).expect("serializable");
            v["updated_at"] = now().into();
            agent_write = Some(Write::Put {
                key: keys::agent_status_key(&self.o.host),
                value: v.to_string(),
                lease: self.lease,
            });
        }
        if writes.is_empty() && agent_write.is_none() {
            return Ok(());
        }
        // The agent key last (in the same transaction when they fit in one):
        // whoever reads its counts finds the port keys written.
        if writes.len() < store::MAX_TXN_OPS {
            writes.extend(agent_write);
            store::write_batch(&self.client, &writes).await?;
        } else {
            store::write_batch(&self.client, &writes).await?;
            store::write_batch(&self.client, &Vec::from_iter(agent_write)).await?;
        }
        self.written = Some(
            self.status
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
        );
        if agent_changed {
            self.agent_written = Some(agent);
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        log("stopping; every binding and attachment stays in place");
        if let Some(id) = self.lease {
            let mut c = self.client.clone();
            let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(id)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_bounded_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..10 {
            let d = b.delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(Duration::from_secs(1));
        }
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
        let j = b.jitter(Duration::from_secs(100));
        assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110));
    }
}

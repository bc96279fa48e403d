//! The etcd side: connecting (mTLS), paged lists at one revision, watches
//! that require a leader, batched writes.
use std::{path::PathBuf, time::Duration};

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};

use super::keys::prefix_end;

/// How to reach the store.
#[derive(Clone, Debug, Default)]
pub struct StoreConfig {
    /// `https://host:port` (with TLS) or `http://host:port`.
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) the servers' certificates are checked against.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM): its CN is the etcd user.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A failed store operation, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The cause is part of the message (one line), not a `source`, so
    // that an anyhow chain does not print it twice.
    #[error("{what}: {source}")]
    Etcd {
        what: String,
        source: etcd_client::Error,
    },
    #[error("{0}: timed out")]
    Timeout(String),
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// The list's revision was compacted between pages: list again.
    pub fn is_compacted(&self) -> bool {
        matches!(self, StoreError::Etcd { source, .. } if source.to_string().contains("compacted"))
    }
}

/// Deadline for a unary call, retries included (watches have none once created).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A member that is down refuses connections and one without a leader
/// answers Unavailable: another member (or a moment later) may answer.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        // gRPC UNAVAILABLE (tonic is not re-exported by etcd-client).
        etcd_client::Error::GRpcStatus(s) => s.code() as i32 == 14,
        _ => false,
    }
}

/// Runs `f` until it succeeds, fails for good, or [`CALL_TIMEOUT`] passes;
/// transient failures are retried after 50-400 ms.
pub async fn call<T, F, Fut>(what: &str, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let mut pause = Duration::from_millis(50);
    loop {
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(source)) => {
                if !transient(&source) || tokio::time::Instant::now() + pause >= deadline {
                    return Err(StoreError::Etcd {
                        what: what.to_string(),
                        source,
                    });
                }
            }
            Err(_) => return Err(StoreError::Timeout(what.to_string())),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(400));
    }
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// Connects (lazily: an unreachable store is not an error here). With
/// `require_leader`, every call and watch carries etcd's `hasleader`
/// metadata, so a member cut off from the leader refuses instead of serving
/// stale data, and cancels watches when the cluster loses quorum.
pub async fn connect(cfg: &StoreConfig, require_leader: bool) -> Result<Client, StoreError> {
    if cfg.endpoints.is_empty() {
        return Err(StoreError::Config("no etcd endpoint given".into()));
    }
    let mut opts = ConnectOptions::new()
        .with_require_leader(require_leader)
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3));
    let tls = cfg.ca.is_some() || cfg.cert.is_some() || cfg.key.is_some();
    if tls {
        let mut t = TlsOptions::new();
        if let Some(ca) = &cfg.ca {
            t = t.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
        }
        match (&cfg.cert, &cfg.key) {
            (Some(c), Some(k)) => {
                t = t.identity(Identity::from_pem(
                    read(c, "client certificate")?,
                    read(k, "client key")?,
                ))
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Config(
                    "a client certificate needs its key (give both --cert and --key)".into(),
                ))
            }
        }
        opts = opts.with_tls(t);
        for e in &cfg.endpoints {
            if !e.starts_with("https://") {
                return Err(StoreError::Config(format!(
                    "endpoint {e:?} must be https:// when TLS options are given"
                )));
            }
        }
    }
    Client::connect(&cfg.endpoints, Some(opts))
        .await
        .map_err(|source| StoreError::Etcd {
            what: "connecting to etcd".into(),
            source,
        })
}

/// One key as listed or watched.
#[derive(Clone, Debug)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// Everything under a prefix at one revision.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub revision: i64,
    pub kvs: Vec<Kv>,
}

/// Lists `prefix` in pages of `page` keys, every page at the revision of
/// the first (a consistent snapshot however large: one unpaged response of
/// a big host would exceed gRPC's 4 MiB message limit).
pub async fn list(client: &Client, prefix: &str, page: i64) -> Result<Listing, StoreError> {
    let kv = client.kv_client();
    let end = prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut out = Listing::default();
    loop {
        let mut o = GetOptions::new().with_range(end.clone()).with_limit(page);
        if out.revision > 0 {
            o = o.with_revision(out.revision);
        }
        let mut r = call(&format!("listing {prefix}"), || {
            let (mut kv, from, o) = (kv.clone(), from.clone(), o.clone());
            async move { kv.get(from, Some(o)).await }
        })
        .await?;
        if out.revision == 0 {
            out.revision = r.header().map(|h| h.revision()).unwrap_or(0);
        }
        let more = r.more();
        let kvs = r.take_kvs();
        for k in kvs {
            out.kvs.push(Kv {
                mod_revision: k.mod_revision(),
                key: k.key().to_vec(),
                value: k.value().to_vec(),
            });
        }
        match (more, out.kvs.last()) {
            (true, Some(last)) => {
                from = last.key.clone();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// Watches `prefix` from `start_revision`, with previous values (so a
/// delete says which interface it was).
pub async fn watch(
    client: &Client,
    prefix: &str,
    start_revision: i64,
) -> Result<WatchStream, StoreError> {
    let w = client.watch_client();
    let o = WatchOptions::new()
        .with_range(prefix_end(prefix))
        .with_start_revision(start_revision)
        .with_prev_key()
        .with_progress_notify();
    call(&format!("watching {prefix}"), || {
        let (mut w, o) = (w.clone(), o.clone());
        async move { w.watch(prefix, Some(o)).await }
    })
    .await
}

/// One write of a batch.
#[derive(Clone, Debug)]
pub enum Write {
    Put {
        key: String,
        value: String,
        lease: Option<i64>,
    },
    Delete(String),
}

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Transactions [`write_batch`] keeps in flight: etcd commits concurrent
/// proposals together (one raft round and fsync for several), so thousands
/// of status keys take a few rounds, not one per 128 keys.
pub const TXNS_IN_FLIGHT: usize = 8;

/// Applies `writes` in transactions of at most [`MAX_TXN_OPS`] operations,
/// up to [`TXNS_IN_FLIGHT`] of them at once (so in no particular order: one
/// key must not appear twice). Every transaction is tried; the first
/// failure is returned.
pub async fn write_batch(client: &Client, writes: &[Write]) -> Result<(), StoreError> {
    let mut running = tokio::task::JoinSet::new();
    let mut first_err = None;
    let mut note = |r: Result<Result<(), StoreError>, tokio::task::JoinError>| {
        let e = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => StoreError::Config(format!("status writer task: {e}")),
        };
        first_err.get_or_insert(e);
    };
    for chunk in writes.chunks(MAX_TXN_OPS) {
        if running.len() >= TXNS_IN_FLIGHT {
            if let Some(r) = running.join_next().await {
                note(r);
            }
        }
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|w| match w {
                Write::Put { key, value, lease } => TxnOp::put(
                    key.as_str(),
                    value.as_str(),
                    lease.map(|l| etcd_client::PutOptions::new().with_lease(l)),
                ),
                Write::Delete(k) => TxnOp::delete(k.as_str(), None),
            })
            .collect();
        let kv = client.kv_client();
        running.spawn(async move {
            call("writing status", || {
                let (mut kv, ops) = (kv.clone(), ops.clone());
                async move { kv.txn(Txn::new().and_then(ops)).await }
            })
            .await
            .map(|_| ())
        });
    }
    while let Some(r) = running.join_next().await {
        note(r);
    }
    first_err.map_or(Ok(()), Err)
}

//! `portguard fleet`: the operator's and orchestrator's side of the fleet
//! contract (docs/fleet.md): put/delete/get a host's port bindings, and the
//! status every agent reports.
use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{bail, Context, Result};
use etcd_client::Client;
use portguard::fleet::{
    converge::PortState,
    keys,
    status::{AgentStatus, PortStatus},
    store::{self, StoreConfig},
    value,
};
use serde_json::{json, Value};

/// How to reach etcd (shared by `agent` and `fleet`).
#[derive(clap::Args, Clone, Debug)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (https:// with TLS).
    #[arg(
        long,
        env = "PORTGUARD_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) for the etcd servers.
    #[arg(long, env = "PORTGUARD_ETCD_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM); its CN is the etcd user.
    #[arg(long, env = "PORTGUARD_ETCD_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, env = "PORTGUARD_ETCD_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl EtcdArgs {
    pub fn config(&self) -> Result<StoreConfig> {
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                bail!(
                    "invalid etcd endpoint {e:?}: expected http://HOST:PORT or https://HOST:PORT"
                );
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            bail!("--cert and --key go together");
        }
        Ok(StoreConfig {
            endpoints: self.endpoints.clone(),
            ca: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        })
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Set a port's binding on a host (validated first; a bad value writes nothing).
    Put(PutArgs),
    /// Remove a port's binding from a host (its agent unbinds and detaches it).
    Delete {
        /// Hypervisor name (its agent's `--host`, its certificate's CN).
        host: String,
        /// Port id.
        id: String,
    },
    /// Show a host's bindings (one port, or all).
    Get {
        /// Hypervisor name.
        host: String,
        /// Port id (all the host's ports without it).
        id: Option<String>,
        /// Print JSON instead of a table.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Agents and per-port status across hosts (or one host).
    Status {
        /// Only this hypervisor.
        host: Option<String>,
        /// Print JSON instead of a table.
        #[arg(short = 'j', long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct PutArgs {
    /// Hypervisor name (its agent's `--host`, its certificate's CN).
    pub host: String,
    /// Port id (one key segment: letters, digits, `.` `_` `:` `-`).
    pub id: String,
    /// The whole value as JSON (a state-file port; `"schema": 1` is added if absent).
    #[arg(long, conflicts_with_all = ["iface", "mac", "ip", "tenant", "mode", "no_attach"])]
    pub value: Option<String>,
    /// Host-side interface of the VM.
    #[arg(long, required_unless_present = "value")]
    pub iface: Option<String>,
    /// The VM's MAC address.
    #[arg(long, required_unless_present = "value")]
    pub mac: Option<String>,
    /// An address or prefix the VM may use (repeat).
    #[arg(long = "ip")]
    pub ip: Vec<String>,
    /// Tenant label.
    #[arg(long)]
    pub tenant: Option<String>,
    /// enforce or monitor.
    #[arg(long)]
    pub mode: Option<String>,
    /// Bind without attaching the filter.
    #[arg(long)]
    pub no_attach: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(_ctx: &super::Ctx, a: Args) -> Result<()> {
    // Everything is validated before connecting.
    let cfg = a.etcd.config()?;
    match &a.command {
        Cmd::Put(p) => {
            keys::check_name("host", &p.host)?;
            keys::check_name("port id", &p.id)?;
        }
        Cmd::Delete { host, id } => {
            keys::check_name("host", host)?;
            keys::check_name("port id", id)?;
        }
        Cmd::Get { host, id, .. } => {
            keys::check_name("host", host)?;
            if let Some(id) = id {
                keys::check_name("port id", id)?;
            }
        }
        Cmd::Status { host: Some(h), .. } => keys::check_name("host", h)?,
        Cmd::Status { .. } => {}
    }
    let put_value = match &a.command {
        Cmd::Put(p) => Some(put_value(p)?),
        _ => None,
    };
    runtime()?.block_on(async move {
        let client = store::connect(&cfg, true).await?;
        match a.command {
            Cmd::Put(p) => put(client, &p, put_value.expect("built above")).await,
            Cmd::Delete { host, id } => delete(client, &host, &id).await,
            Cmd::Get { host, id, json } => get(&client, &host, id.as_deref(), json).await,
            Cmd::Status { host, json } => status(&client, host.as_deref(), json).await,
        }
    })
}

/// The normalized value to store (validated by the agent's own parser).
fn put_value(p: &PutArgs) -> Result<String> {
    let key = keys::port_key(&p.host, &p.id);
    let mut v: Value = match &p.value {
        Some(text) => serde_json::from_str(text).context("--value is not valid JSON")?,
        None => {
            let mut v = json!({
                "iface": p.iface,
                "mac": p.mac,
                "ips": p.ip,
                "attach": !p.no_attach,
            });
            if let Some(t) = &p.tenant {
                v["tenant"] = json!(t);
            }
            if let Some(m) = &p.mode {
                v["mode"] = json!(m);
            }
            v
        }
    };
    if let Value::Object(m) = &mut v {
        m.entry("schema").or_insert(json!(value::SCHEMA));
    }
    let spec = value::parse(&key, v.to_string().as_bytes())?;
    Ok(value::to_value(&spec).to_string())
}

async fn put(c: Client, p: &PutArgs, v: String) -> Result<()> {
    let key = keys::port_key(&p.host, &p.id);
    let r = store::call(&format!("writing {key}"), || {
        let (mut c, v) = (c.clone(), v.clone());
        let key = key.clone();
        async move { c.put(key, v, None).await }
    })
    .await?;
    let rev = r.header().map(|h| h.revision()).unwrap_or(0);
    println!("put {key} (mod revision {rev})");
    Ok(())
}

async fn delete(c: Client, host: &str, id: &str) -> Result<()> {
    let key = keys::port_key(host, id);
    let r = store::call(&format!("deleting {key}"), || {
        let (mut c, key) = (c.clone(), key.clone());
        async move { c.delete(key, None).await }
    })
    .await?;
    if r.deleted() == 0 {
        bail!("no binding {key}");
    }
    println!("deleted {key}");
    Ok(())
}

/// A host's bindings: id -> (mod revision, value or the reason it is invalid).
async fn bindings(
    c: &Client,
    prefix: &str,
) -> Result<BTreeMap<(String, String), (i64, Result<Value, String>)>> {
    let l = store::list(c, prefix, 1000).await?;
    let mut out = BTreeMap::new();
    for kv in l.kvs {
        let Some((host, id)) = keys::parse_port_key(&kv.key) else {
            continue;
        };
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let v = value::parse(&key, &kv.value)
            .map(|s| value::to_value(&s))
            .map_err(|e| e.0);
        out.insert((host.to_string(), id.to_string()), (kv.mod_revision, v));
    }
    Ok(out)
}

async fn get(c: &Client, host: &str, id: Option<&str>, as_json: bool) -> Result<()> {
    let mut b = bindings(c, &keys::ports_prefix(host)).await?;
    if let Some(id) = id {
        b.retain(|(_, i), _| i == id);
        if b.is_empty() {
            bail!("no binding {}", keys::port_key(host, id));
        }
    }
    if as_json {
        let v: Vec<Value> = b
            .iter()
            .map(|((h, i), (rev, v))| {
                json!({
                    "host": h, "id": i, "mod_revision": rev,
                    "value": v.as_ref().ok(), "error": v.as_ref().err(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = b
        .iter()
        .map(|((_, i), (rev, v))| match v {
            Ok(v) => vec![
                i.clone(),
                v["iface"].as_str().unwrap_or("").to_string(),
                v["mac"].as_str().unwrap_or("").to_string(),
                v["ips"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
                v["mode"].as_str().unwrap_or("").to_string(),
                rev.to_string(),
            ],
            Err(e) => vec![
                i.clone(),
                "-".into(),
                "-".into(),
                format!("INVALID: {e}"),
                "-".into(),
                rev.to_string(),
            ],
        })
        .collect();
    print!(
        "{}",
        portguard::report::table(&["ID", "IFACE", "MAC", "IPS", "MODE", "MOD_REV"], &rows)
    );
    Ok(())
}

/// What a port's status means against its binding's revision.
fn effective_state(binding_rev: i64, st: Option<&PortStatus>) -> &'static str {
    match st {
        None => "unknown",
        Some(s) if s.observed_mod_revision != binding_rev => "applying",
        Some(s) => match s.state {
            PortState::Enforced => "enforced",
            PortState::Pending => "pending",
            PortState::Error => "error",
        },
    }
}

async fn status(c: &Client, host: Option<&str>, as_json: bool) -> Result<()> {
    let (bprefix, sprefix) = match host {
        Some(h) => (keys::ports_prefix(h), keys::status_prefix(h)),
        None => (keys::all_hosts_prefix(), keys::all_status_prefix()),
    };
    let b = bindings(c, &bprefix).await?;
    let s = store::list(c, &sprefix, 1000).await?;
    let mut agents: BTreeMap<String, Value> = BTreeMap::new();
    let mut ports: BTreeMap<(String, String), PortStatus> = BTreeMap::new();
    let mut orphans: Vec<(String, String)> = Vec::new();
    for kv in &s.kvs {
        match keys::parse_status_key(&kv.key) {
            Some((h, None)) => {
                let v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
                agents.insert(h.to_string(), v);
            }
            Some((h, Some(id))) => {
                if let Ok(st) = serde_json::from_slice::<PortStatus>(&kv.value) {
                    ports.insert((h.to_string(), id.to_string()), st);
                }
            }
            None => {}
        }
    }
    let mut hosts: std::collections::BTreeSet<String> = agents.keys().cloned().collect();
    hosts.extend(b.keys().map(|(h, _)| h.clone()));
    if let Some(h) = host {
        hosts.insert(h.to_string());
    }
    for k in ports.keys() {
        if !b.contains_key(k) {
            orphans.push(k.clone());
        }
    }
    if as_json {
        let out: Vec<Value> = hosts
            .iter()
            .map(|h| {
                let ps: Vec<Value> = b
                    .iter()
                    .filter(|((bh, _), _)| bh == h)
                    .map(|((_, id), (rev, _))| {
                        let st = ports.get(&(h.clone(), id.clone()));
                        json!({
                            "id": id,
                            "binding_mod_revision": rev,
                            "state": effective_state(*rev, st),
                            "status": st,
                        })
                    })
                    .collect();
                json!({ "host": h, "agent": agents.get(h), "ports": ps })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "hosts": out }))?
        );
        return Ok(());
    }
    let arows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| match agents.get(h) {
            Some(v) => {
                let a: AgentStatus = serde_json::from_value(v.clone()).unwrap_or_default();
                vec![
                    h.clone(),
                    if a.in_sync { "in sync" } else { "degraded" }.into(),
                    a.synced_revision.to_string(),
                    format!("{}/{}/{}/{}", a.ports, a.enforced, a.pending, a.error),
                    a.last_error.unwrap_or_else(|| "-".into()),
                ]
            }
            None => vec![
                h.clone(),
                "absent".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        })
        .collect();
    print!(
        "{}",
        portguard::report::table(
            &[
                "HOST",
                "AGENT",
                "SYNCED_REV",
                "PORTS/ENF/PEND/ERR",
                "LAST_ERROR"
            ],
            &arows
        )
    );
    println!();
    let prows: Vec<Vec<String>> = b
        .iter()
        .map(|((h, id), (rev, _))| {
            let st = ports.get(&(h.clone(), id.clone()));
            vec![
                h.clone(),
                id.clone(),
                st.map(|s| s.iface.clone()).unwrap_or_else(|| "-".into()),
                effective_state(*rev, st).into(),
                format!(
                    "{}/{rev}",
                    st.map(|s| s.observed_mod_revision.to_string())
                        .unwrap_or_else(|| "-".into())
                ),
                st.and_then(|s| s.message.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        portguard::report::table(
            &["HOST", "ID", "IFACE", "STATE", "OBSERVED/REV", "MESSAGE"],
            &prows
        )
    );
    for (h, id) in orphans {
        println!("note: status for {h}/{id} has no binding (the agent removes it)");
    }
    Ok(())
}

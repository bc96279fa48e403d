//! A real etcd cluster for fleet tests, benchmarks and the demo.
//!
//! [`Cluster::start`] runs `n` Debian `etcd` members in their own network
//! namespace `pgt-<pid>-<n>-etcd` (clients on `https://0.0.0.0:2379+2i`,
//! peers on `127.0.0.1:2380+2i`, data in a temp dir), with TLS material made
//! by `openssl` ([`Pki`]): a CA, a server certificate for 127.0.0.1 and
//! 198.51.100.254, and one client certificate per user (CN = etcd user).
//! Authentication is on: `root`, `orchestrator` (read-write on
//! `/portguard/v1/`) and, per host `hvN`, a user `hvN` whose role
//! `host-hvN` reads `/portguard/v1/hosts/hvN/` and writes
//! `/portguard/v1/status/hvN/`, exactly as docs/fleet.md tells an operator.
//!
//! A host namespace reaches the cluster through [`Cluster::connect`]: a veth
//! from the host namespace (`mgmt0`, 198.51.100.<k>/24) to a bridge in the
//! etcd namespace (198.51.100.254/24). Dropping the cluster kills every
//! member by pid and removes the namespace and the temp dir.
use std::{
    fs,
    future::Future,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use etcd_client::Client;
use portguard::fleet::{keys, store};

use crate::{
    netns::{cmd, enter_netns, must, unique_id},
    proc::Proc,
};

/// Address of the cluster's namespace on the management bridge.
pub const ETCD_ADDR: &str = "198.51.100.254";

/// CA, server and client certificates in a directory.
pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Pki {
    /// A CA and a server certificate for 127.0.0.1 and [`ETCD_ADDR`].
    pub fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir).expect("mkdir pki");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut a = vec!["req", "-x509", "-nodes", "-days", "2"];
        a.extend_from_slice(&ec);
        a.extend_from_slice(&[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=portguard-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &a);
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.issue(
            "server",
            &format!("subjectAltName=IP:127.0.0.1,IP:{ETCD_ADDR}\nextendedKeyUsage=serverAuth,clientAuth\n"),
        );
        pki
    }

    fn issue(&self, name: &str, ext: &str) {
        let ext_file = format!("{name}.ext");
        fs::write(
            self.dir.join(&ext_file),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n{ext}"),
        )
        .expect("write ext");
        openssl(
            &self.dir,
            &[
                "req",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                &ext_file,
            ],
        );
    }

    /// A client certificate with CN = `user`.
    pub fn client(&self, user: &str) {
        if !self.cert(user).exists() {
            self.issue(user, "extendedKeyUsage=clientAuth\n");
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn cert(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.crt"))
    }
    pub fn key(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.key"))
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    proc: Option<Proc>,
}

/// A running etcd cluster; see the module docs.
pub struct Cluster {
    /// Network namespace of the members.
    pub ns: String,
    pub dir: PathBuf,
    pub pki: Pki,
    members: Vec<Member>,
    initial_cluster: String,
    next_host_addr: u8,
}

impl Cluster {
    /// Starts `n` members with TLS and authentication, users `root`,
    /// `orchestrator` and one per name in `hosts`; waits until healthy.
    pub fn start(n: usize, hosts: &[&str]) -> Cluster {
        let id = unique_id();
        let ns = format!("{id}-etcd");
        let dir = std::env::temp_dir().join(format!("{id}-etcd"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir etcd dir");
        must(&["ip", "netns", "add", &ns]);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: 2379 + 2 * i as u16,
                peer_port: 2380 + 2 * i as u16,
                proc: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            pki: Pki {
                dir: dir.join("pki"),
            },
            ns: ns.clone(),
            dir: dir.clone(),
            members,
            initial_cluster,
            next_host_addr: 1,
        };
        // From here on, Drop cleans up.
        c.pki = Pki::new(&dir.join("pki"));
        for u in ["root", "orchestrator"].iter().chain(hosts) {
            c.pki.client(u);
        }
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        must(&[
            "ip",
            "-n",
            &ns,
            "link",
            "add",
            "mgmt",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        must(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ETCD_ADDR}/24"),
            "dev",
            "mgmt",
        ]);
        must(&["ip", "-n", &ns, "link", "set", "mgmt", "up"]);
        for i in 0..n {
            c.spawn(i, "new");
        }
        c.wait_healthy(Duration::from_secs(30));
        c.setup_auth(hosts);
        c
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let client = format!("https://0.0.0.0:{}", m.client_port);
        let adv = format!("https://{ETCD_ADDR}:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let (ca, cert, key) = (
            self.pki.ca(),
            self.pki.dir.join("server.crt"),
            self.pki.dir.join("server.key"),
        );
        let argv: Vec<String> = vec![
            "etcd".into(),
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            client,
            "--advertise-client-urls".into(),
            adv,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            self.initial_cluster.clone(),
            "--initial-cluster-state".into(),
            state.into(),
            "--initial-cluster-token".into(),
            self.ns.clone(),
            "--heartbeat-interval".into(),
            "100".into(),
            "--election-timeout".into(),
            "1000".into(),
            "--cert-file".into(),
            cert.display().to_string(),
            "--key-file".into(),
            key.display().to_string(),
            "--trusted-ca-file".into(),
            ca.display().to_string(),
            "--client-cert-auth".into(),
            "--logger".into(),
            "zap".into(),
        ];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let log = self.dir.join(format!("{}.log", m.name));
        // One log per life of the member ("new", then "existing" after a restart).
        let p = Proc::spawn(&self.ns, &argv, &log.with_extension(format!("{state}.log")));
        self.members[i].proc = Some(p);
    }

    /// `https://198.51.100.254:<port>` for every member, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("https://{ETCD_ADDR}:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn local_endpoints(&self, only_alive: bool) -> String {
        self.members
            .iter()
            .filter(|m| !only_alive || m.proc.is_some())
            .map(|m| format!("https://127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcdctl` as `user`, in the cluster's namespace, against every live member.
    pub fn etcdctl(&self, user: &str, args: &[&str]) -> Output {
        let eps = self.local_endpoints(true);
        let (ca, cert, key) = (self.pki.ca(), self.pki.cert(user), self.pki.key(user));
        let mut v: Vec<String> = vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", self.ns),
            "etcdctl".into(),
            "--endpoints".into(),
            eps,
            "--cacert".into(),
            ca.display().to_string(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "--command-timeout".into(),
            "5s".into(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        cmd(&v)
    }

    /// [`Cluster::etcdctl`] that panics on failure.
    pub fn etcdctl_ok(&self, user: &str, args: &[&str]) -> String {
        let o = self.etcdctl(user, args);
        assert!(
            o.status.success(),
            "etcdctl {args:?} as {user}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let o = self.etcdctl("root", &["endpoint", "health"]);
            if o.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd cluster not healthy after {limit:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Users and roles of the contract (docs/fleet.md), then `auth enable`.
    fn setup_auth(&self, hosts: &[&str]) {
        let e = |args: &[&str]| {
            self.etcdctl_ok("root", args);
        };
        e(&["user", "add", "root", "--no-password"]);
        e(&["user", "grant-role", "root", "root"]);
        e(&["role", "add", "orchestrator"]);
        e(&[
            "role",
            "grant-permission",
            "orchestrator",
            "readwrite",
            keys::ROOT,
            "--prefix=true",
        ]);
        e(&["user", "add", "orchestrator", "--no-password"]);
        e(&["user", "grant-role", "orchestrator", "orchestrator"]);
        for h in hosts {
            let role = format!("host-{h}");
            e(&["role", "add", &role]);
            e(&[
                "role",
                "grant-permission",
                &role,
                "read",
                &keys::host_prefix(h),
                "--prefix=true",
            ]);
            e(&[
                "role",
                "grant-permission",
                &role,
                "readwrite",
                &keys::status_prefix(h),
                "--prefix=true",
            ]);
            e(&["user", "add", h, "--no-password"]);
            e(&["user", "grant-role", h, &role]);
        }
        e(&["auth", "enable"]);
    }

    /// Connects host namespace `ns` to the cluster (`mgmt0` there).
    /// Returns the host's address.
    pub fn connect(&mut self, ns: &str) -> String {
        let k = self.next_host_addr;
        self.next_host_addr += 1;
        let port = format!("m{k}");
        must(&[
            "ip", "-n", &self.ns, "link", "add", &port, "type", "veth", "peer", "name", "mgmt0",
            "netns", ns,
        ]);
        must(&["ip", "-n", &self.ns, "link", "set", &port, "master", "mgmt"]);
        must(&["ip", "-n", &self.ns, "link", "set", &port, "up"]);
        let addr = format!("198.51.100.{k}");
        must(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "mgmt0",
        ]);
        must(&["ip", "-n", ns, "link", "set", "mgmt0", "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        addr
    }

    /// The index of the current leader (None while there is none).
    pub fn leader(&self) -> Option<usize> {
        let o = self.etcdctl("root", &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        for e in v.as_array()? {
            let ep = e.get("Endpoint")?.as_str()?;
            let st = e.get("Status")?;
            let me = st.get("header")?.get("member_id")?.as_u64()?;
            let leader = st.get("leader")?.as_u64()?;
            if me == leader && leader != 0 {
                return self
                    .members
                    .iter()
                    .position(|m| ep.ends_with(&format!(":{}", m.client_port)));
            }
        }
        None
    }

    /// SIGKILL of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].proc.is_none(), "member {i} is running");
        self.spawn(i, "existing");
    }

    /// Pids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.proc.as_ref().map(|p| p.pid()))
            .collect()
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl_ok("root", &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("endpoint status json");
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["Status"]["header"]["revision"].as_i64())
            .max()
            .expect("a revision")
    }

    /// A store config for `user` against the members from inside the
    /// cluster's namespace (for [`Cluster::with_client`]).
    pub fn local_config(&self, user: &str) -> store::StoreConfig {
        store::StoreConfig {
            endpoints: self
                .local_endpoints(true)
                .split(',')
                .map(str::to_string)
                .collect(),
            ca: Some(self.pki.ca()),
            cert: Some(self.pki.cert(user)),
            key: Some(self.pki.key(user)),
        }
    }

    /// Runs `f` with an etcd client authenticated as `user`, on a thread in
    /// the cluster's namespace (bulk writes without a process per key).
    pub fn with_client<T, F, Fut>(&self, user: &str, f: F) -> T
    where
        T: Send,
        F: FnOnce(Client) -> Fut + Send,
        Fut: Future<Output = T>,
    {
        let cfg = self.local_config(user);
        let ns = self.ns.clone();
        thread::scope(|s| {
            s.spawn(move || {
                enter_netns(&ns).expect("enter etcd netns");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let c = store::connect(&cfg, false).await.expect("connect");
                    f(c).await
                })
            })
            .join()
            .expect("client thread panicked")
        })
    }

    /// The arguments that point `portguard agent`/`fleet` at the cluster as `user`.
    pub fn client_args(&self, user: &str) -> Vec<String> {
        vec![
            "--endpoints".into(),
            self.endpoints(),
            "--cacert".into(),
            self.pki.ca().display().to_string(),
            "--cert".into(),
            self.pki.cert(user).display().to_string(),
            "--key".into(),
            self.pki.key(user).display().to_string(),
        ]
    }

    /// `portguard fleet ARGS` as `user`, run in host namespace `ns`
    /// (which must be [`Cluster::connect`]ed).
    pub fn fleet(&self, ns: &str, user: &str, args: &[&str]) -> Output {
        let mut v: Vec<String> = vec![
            format!("--net=/run/netns/{ns}"),
            crate::cli::bin().display().to_string(),
            "fleet".into(),
        ];
        v.extend(self.client_args(user));
        v.extend(args.iter().map(|s| s.to_string()));
        Command::new("nsenter")
            .args(&v)
            .output()
            .expect("run portguard fleet")
    }

    /// Member logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    s.push_str(&format!("== {}\n", p.display()));
                    for l in tail.into_iter().rev() {
                        s.push_str(l);
                        s.push('\n');
                    }
                }
            }
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut p) = m.proc.take() {
                p.kill();
            }
        }
        let _ = cmd(&["ip", "netns", "del", &self.ns]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

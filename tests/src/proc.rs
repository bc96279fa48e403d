//! Helpers for tests that run real programs (dnsmasq, dhclient, ...) inside
//! a lab's namespaces: a scratch directory and a child process, both cleaned
//! up on drop.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::netns::Lab;

/// A scratch directory removed on drop.
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    pub fn new(lab: &Lab, tag: &str) -> TmpDir {
        let p = std::env::temp_dir().join(format!("{}-{tag}", lab.id));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("mkdir tmp");
        TmpDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A program running in a netns (`nsenter --net` execs it, so the child's
/// pid is the program's), stdout+stderr to a log file. TERM, then KILL, on drop.
pub struct Proc {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(ns: &str, argv: &[&str], log: &Path) -> Proc {
        let out = fs::File::create(log).expect("create log");
        let err = out.try_clone().expect("dup log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?} in {ns}: {e}"));
        Proc {
            child,
            what: format!("{argv:?} in {ns}"),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. libc::SIGKILL, SIGSTOP, SIGCONT) to the program.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (no chance to clean up), then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn assert_running(&mut self) {
        if let Some(st) = self.exited() {
            panic!("{} exited ({st}):\n{}", self.what, self.log());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn need_tool(name: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{name} is not installed (apt-get install -y dnsmasq-base isc-dhcp-client; `cargo xtask setup` does it)"
    );
}

/// Polls `cond` every 100 ms for up to `secs`.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// dnsmasq as a DHCP server only (no DNS), in the foreground in netns `ns`,
/// serving on `iface`, its lease file, pid file and log in `tmp` under `tag`;
/// `extra` adds options (`--dhcp-range=...`, `--no-ping`, ...).
pub fn dnsmasq_dhcp(ns: &str, tmp: &TmpDir, tag: &str, iface: &str, extra: &[&str]) -> Proc {
    let iface_arg = format!("--interface={iface}");
    let lease_arg = format!("--dhcp-leasefile={}", tmp.s(&format!("{tag}.leases")));
    let pid_arg = format!("--pid-file={}", tmp.s(&format!("{tag}.pid")));
    let mut argv = vec![
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--user=root",
        "--group=root",
        "--port=0",
        "--no-resolv",
        "--no-hosts",
        "--log-dhcp",
        "--log-facility=-",
        &iface_arg,
        &lease_arg,
        &pid_arg,
    ];
    argv.extend_from_slice(extra);
    let mut p = Proc::spawn(ns, &argv, &tmp.path(&format!("{tag}.log")));
    thread::sleep(Duration::from_millis(300));
    p.assert_running();
    p
}

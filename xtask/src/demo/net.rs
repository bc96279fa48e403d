//! The demo's throwaway network: a host namespace with bridge `br0` and three
//! VM namespaces on veth pairs, plus the pin dir. Dropping `Lab` (also on
//! error, panic or Ctrl-C) removes all of it.
use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Result};

use super::frames::Mac;
use crate::util::{describe, stdout_of};

pub const PREFIX: &str = "pgdemo-";
pub const HOST: &str = "pgdemo-host";
pub const PIN_DIR: &str = "/sys/fs/bpf/pgdemo";

pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C / SIGTERM set a flag the demo checks between steps (our children get
/// the SIGINT themselves and exit), so cleanup always runs.
pub fn catch_signals() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub struct Vm {
    pub name: &'static str,
    pub ns: String,
    /// Host-side veth end, where portguard is attached.
    pub port: &'static str,
    pub mac: Mac,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Vm {
    fn new(n: u8) -> Vm {
        let name: &'static str = ["vm1", "vm2", "vm3"][n as usize - 1];
        Vm {
            name,
            ns: format!("{PREFIX}{name}"),
            port: ["pgv1", "pgv2", "pgv3"][n as usize - 1],
            mac: [0x02, 0, 0, 0, 0, 0x10 + n],
            v4: Ipv4Addr::new(192, 0, 2, 10 + n),
            v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + u16::from(n)),
        }
    }

    pub fn mac_str(&self) -> String {
        mac_str(&self.mac)
    }

    /// fe80::/64 + modified EUI-64 of the MAC (what the kernel configures).
    /// (xtask does not depend on filter-common's `eui64_link_local`.)
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.mac;
        let b = [
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 2,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ];
        Ipv6Addr::from(b)
    }
}

pub fn mac_str(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub struct Lab {
    pub vms: [Vm; 3],
    portguard: PathBuf,
    background: Vec<Child>,
}

/// `nsenter --net=/run/netns/NS PROG ARGS`: only the network namespace
/// changes, so pins under the host's /sys/fs/bpf stay visible and persist.
pub fn in_ns<S: AsRef<std::ffi::OsStr>>(
    ns: &str,
    prog: impl AsRef<std::ffi::OsStr>,
    args: &[S],
) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}")).arg(prog).args(args);
    c
}

fn ip(args: &[&str]) -> Result<()> {
    stdout_of(Command::new("ip").args(args)).map(drop)
}

fn sysctl(ns: &str, settings: &[&str]) -> Result<()> {
    let mut args = vec!["-q", "-w"];
    args.extend(settings);
    stdout_of(&mut in_ns(ns, "sysctl", &args)).map(drop)
}

impl Lab {
    /// Removes leftovers of an earlier run, then builds the topology.
    pub fn create(portguard: &Path) -> Result<Lab> {
        teardown();
        let lab = Lab {
            vms: [Vm::new(1), Vm::new(2), Vm::new(3)],
            portguard: portguard.to_path_buf(),
            background: Vec::new(),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&self) -> Result<()> {
        ip(&["netns", "add", HOST])?;
        // The bridge only switches frames; keep the host side quiet.
        sysctl(
            HOST,
            &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        ip(&[
            "-n",
            HOST,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", HOST, "link", "set", "br0", "up"])?;
        for vm in &self.vms {
            ip(&["netns", "add", &vm.ns])?;
            // Addresses usable at once (no DAD wait); accept router advertisements
            // like an ordinary guest, so a rogue RA would visibly take effect.
            sysctl(
                &vm.ns,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.forwarding=0",
                    "net.ipv6.conf.default.accept_ra=1",
                ],
            )?;
            let mac = vm.mac_str();
            ip(&[
                "-n", HOST, "link", "add", vm.port, "type", "veth", "peer", "name", "eth0",
                "netns", &vm.ns, "address", &mac,
            ])?;
            ip(&["-n", HOST, "link", "set", vm.port, "master", "br0", "up"])?;
            let v4 = format!("{}/24", vm.v4);
            let v6 = format!("{}/64", vm.v6);
            ip(&["-n", &vm.ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &vm.ns, "addr", "add", &v4, "dev", "eth0"])?;
            ip(&["-n", &vm.ns, "addr", "add", &v6, "dev", "eth0", "nodad"])?;
            ip(&["-n", &vm.ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// `portguard --pin-dir PIN_DIR ARGS` in the host namespace.
    pub fn portguard(&self, args: &[&str]) -> Command {
        let mut a: Vec<&str> = vec!["--pin-dir", PIN_DIR];
        a.extend(args);
        in_ns(HOST, &self.portguard, &a)
    }

    /// Runs portguard and returns its stdout (the error carries its stderr).
    pub fn portguard_ok(&self, args: &[&str]) -> Result<String> {
        let out = stdout_of(&mut self.portguard(args))?;
        Ok(out)
    }

    /// A command inside a VM.
    pub fn vm(&self, vm: &Vm, prog: &str, args: &[&str]) -> Command {
        in_ns(&vm.ns, prog, args)
    }

    pub fn vm_ok(&self, vm: &Vm, prog: &str, args: &[&str]) -> Result<String> {
        stdout_of(&mut self.vm(vm, prog, args))
    }

    /// Succeeds or not, output discarded.
    pub fn vm_status(&self, vm: &Vm, prog: &str, args: &[&str]) -> Result<bool> {
        let mut c = self.vm(vm, prog, args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Ok(crate::util::status(&mut c)?.success())
    }

    /// Counters from /proc/net/snmp as "Proto.Name" (e.g. "Icmp.InEchos").
    pub fn snmp(&self, vm: &Vm) -> Result<HashMap<String, u64>> {
        let text = self.vm_ok(vm, "cat", &["/proc/net/snmp"])?;
        let lines: Vec<&str> = text.lines().collect();
        let mut out = HashMap::new();
        for pair in lines.chunks(2) {
            if let [names, values] = pair {
                let (proto, names) = names.split_once(':').unwrap_or(("", names));
                let values = values.split_once(':').map_or(*values, |v| v.1);
                for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                    if let Ok(v) = v.parse::<i64>() {
                        out.insert(format!("{proto}.{n}"), v.max(0) as u64);
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn spawn(&mut self, mut cmd: Command) -> Result<()> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run `{}`: {e}", describe(&cmd)))?;
        self.background.push(child);
        Ok(())
    }

    /// Stops the background processes (SIGINT, like Ctrl-C, if still running)
    /// and returns their output.
    pub fn stop_background(&mut self) -> Vec<std::process::Output> {
        let mut outs = Vec::new();
        for mut c in self.background.drain(..) {
            if matches!(c.try_wait(), Ok(None)) {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            }
            if let Ok(o) = c.wait_with_output() {
                outs.push(o);
            }
        }
        outs
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Let cleanup finish even if Ctrl-C is pressed again (children inherit SIG_IGN).
        // SAFETY: setting a signal disposition.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        for mut c in self.background.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        teardown();
    }
}

/// Deletes every `pgdemo-`
/// namespace and the pin dir (which also detaches anything still linked).
fn teardown() {
    if let Ok(list) = stdout_of(Command::new("ip").args(["netns", "list"])) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with(PREFIX) {
                let _ = stdout_of(Command::new("ip").args(["netns", "del", ns]));
            }
        }
    }
    if Path::new(PIN_DIR).exists() {
        if let Err(e) = std::fs::remove_dir_all(PIN_DIR) {
            eprintln!("warning: could not remove {PIN_DIR}: {e}");
        }
    }
}

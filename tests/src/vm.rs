//! A real QEMU guest (TCG) on a tap, driven through a shell on its second
//! serial port. The image (kernel + busybox initramfs) is built and cached
//! by `cargo xtask test --vm`, which passes its paths in
//! `PORTGUARD_VM_KERNEL` / `PORTGUARD_VM_INITRD`.
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::proc::Proc;

/// Paths of the guest image from the environment; panics naming the
/// variables (the test must not pass silently without a guest).
pub fn image() -> (PathBuf, PathBuf) {
    let get = |k: &str| -> PathBuf {
        let p = std::env::var_os(k).map(PathBuf::from).unwrap_or_else(|| {
            panic!("{k} is not set: run this test through `cargo xtask test --vm` (it builds the guest image)")
        });
        assert!(p.exists(), "{k}={} does not exist", p.display());
        p
    };
    (get("PORTGUARD_VM_KERNEL"), get("PORTGUARD_VM_INITRD"))
}

/// A booted guest. Dropping it stops QEMU (TERM, then KILL) and removes its
/// scratch directory.
pub struct Guest {
    shell: UnixStream,
    seq: u32,
    dir: PathBuf,
    /// Always Some until drop.
    qemu: Option<Proc>,
    /// The last bytes read from the shell (for failure messages).
    last: String,
}

impl Guest {
    /// Boots QEMU in netns `ns` on the existing tap `tap` (created with
    /// `vnet_hdr`) with NIC MAC `mac`; returns once the guest's shell answers.
    pub fn boot(ns: &str, tap: &str, mac: &str, tag: &str) -> Guest {
        let (kernel, initrd) = image();
        let dir = std::env::temp_dir().join(format!("{tag}-vm"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir vm dir");
        let sock = dir.join("shell.sock");
        let console = dir.join("console.log");
        // setpriv: QEMU dies with this process even if it is killed before
        // the guard's drop (nsenter execs, so the test is the parent).
        let args = [
            "setpriv".to_string(),
            "--pdeathsig".into(),
            "KILL".into(),
            "qemu-system-x86_64".into(),
            "-accel".into(),
            "tcg".into(),
            "-m".into(),
            "256".into(),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
            "-kernel".into(),
            kernel.display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            "console=ttyS0 panic=-1".into(),
            "-serial".into(),
            format!("file:{}", console.display()),
            "-serial".into(),
            format!("unix:{},server=on,wait=off", sock.display()),
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
        ];
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut qemu = Proc::spawn(ns, &argv, &dir.join("qemu.log"));
        let t = Instant::now();
        let shell = loop {
            qemu.assert_running();
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "QEMU did not open {} within 30 s",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        shell
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("socket timeout");
        let mut g = Guest {
            shell,
            seq: 0,
            dir,
            qemu: Some(qemu),
            last: String::new(),
        };
        // TCG on a loaded 2-core host: booting takes 5-20 s; allow far more.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            g.qemu_running();
            if let Some((0, out)) = g.try_run("echo pgvm-alive", Duration::from_secs(3)) {
                if out.contains("pgvm-alive") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the guest shell did not answer within 180 s; shell output {:?}; console:\n{}",
                g.last,
                g.console()
            );
        }
        eprintln!("vm: guest up after {:.1} s", t.elapsed().as_secs_f64());
        g
    }

    fn qemu_running(&mut self) {
        if let Some(q) = self.qemu.as_mut() {
            q.assert_running();
        }
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Runs `cmd` in the guest shell; (exit status, output) or None on timeout.
    fn try_run(&mut self, cmd: &str, timeout: Duration) -> Option<(i32, String)> {
        self.seq += 1;
        // The marker's digits only appear once the shell expands `$?`, so an
        // echoed command line never matches.
        let tag = format!("@@pgvm{}=", self.seq);
        let line = format!("{{ {cmd} ; }} 2>&1; echo \"{tag}$?@@\"\n");
        self.shell.write_all(line.as_bytes()).ok()?;
        let deadline = Instant::now() + timeout;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut quiet_since = Instant::now();
        loop {
            // The guest's 8250 transmit sometimes stalls under TCG until the
            // port receives something: after a quiet second send an empty
            // line (an empty command for the shell once the current one ends).
            if quiet_since.elapsed() > Duration::from_secs(1) {
                self.shell.write_all(b"\n").ok()?;
                quiet_since = Instant::now();
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            self.last = text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if let Some(i) = text.find(&tag) {
                let rest = &text[i + tag.len()..];
                if let Some(j) = rest.find("@@") {
                    if let Ok(rc) = rest[..j].parse::<i32>() {
                        let out = text[..i].replace(&line[..line.len() - 1], "");
                        return Some((rc, out));
                    }
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            match self.shell.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    quiet_since = Instant::now();
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return None,
            }
        }
    }

    /// Runs `cmd` in the guest; (exit status, output). Panics on timeout.
    pub fn run(&mut self, cmd: &str, timeout_s: u64) -> (i32, String) {
        self.try_run(cmd, Duration::from_secs(timeout_s))
            .unwrap_or_else(|| {
                panic!(
                    "guest command timed out after {timeout_s} s: {cmd}\nconsole:\n{}",
                    self.console()
                )
            })
    }

    /// [`Guest::run`] that must exit 0.
    pub fn ok(&mut self, cmd: &str, timeout_s: u64) -> String {
        let (rc, out) = self.run(cmd, timeout_s);
        assert_eq!(rc, 0, "guest command failed ({rc}): {cmd}\n{out}");
        out
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.shell.shutdown(std::net::Shutdown::Both);
        // Stop QEMU (Proc's drop: TERM, then KILL) before removing its files.
        drop(self.qemu.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

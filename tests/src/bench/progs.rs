//! The programs under test, the addresses and frames fed to them, and the two
//! ways of timing them with BPF_PROG_TEST_RUN (plain and `xdp_live_frames`).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    programs::{SchedClassifier, TestRun, TestRunAttrs, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use portguard::{
    binding::Binding,
    parse::{IpNet, Mac},
    pinned::Pinned,
    EBPF_OBJECT,
};

use super::sys::PinDir;
use crate::frames;

/// MAC of the bound port (the "VM").
pub const VM_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
/// Destination MAC of the benchmark frames: nobody's, so a frame that reaches
/// the IP stack is PACKET_OTHERHOST and dropped at the top of ip_rcv/ipv6_rcv.
pub const OTHER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0xfe];

pub const V4_BOUND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const V4_SPOOF: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
pub const V4_DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// The i-th bound address of a scaled binding.
    ///
    /// IPv6: 2001:db8:100::/64 + i (documentation space). IPv4: the three
    /// documentation /24s hold only 768 addresses, so a scaled IPv4 binding
    /// uses 10.0.0.0 + i as DATA ONLY: it lives in the BPF map and in plain
    /// (not live) BPF_PROG_TEST_RUN input buffers, which never leave the
    /// kernel's test harness; it is never configured on an interface nor sent.
    pub fn bound(self, i: u32) -> IpAddr {
        match self {
            Family::V6 => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x100,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            )),
            Family::V4 => IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i)),
        }
    }

    /// The j-th unbound source (disjoint from every `bound(i)`).
    pub fn unbound(self, j: u32) -> IpAddr {
        match self {
            Family::V6 => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x200,
                0,
                0,
                0,
                (j >> 16) as u16,
                j as u16,
            )),
            Family::V4 => IpAddr::V4(Ipv4Addr::from(0x0a80_0000u32 + j)),
        }
    }

    /// The one spoofed source used where a single frame is replayed
    /// (Tier B: documentation space only, since those frames are live).
    pub fn spoof(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(V4_SPOOF),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0x66)),
        }
    }
}

/// 60-byte UDP frame from `src` (VM_MAC) to OTHER_MAC.
pub fn udp_frame(src: IpAddr) -> Vec<u8> {
    let payload = [0u8; 18];
    let f = match src {
        IpAddr::V4(s) => frames::eth_ipv4(
            OTHER_MAC,
            VM_MAC,
            &frames::udp4(s, V4_DST, 40000, 9, &payload),
        ),
        IpAddr::V6(s) => frames::eth_ipv6(
            OTHER_MAC,
            VM_MAC,
            &frames::udp6(s, V6_DST, 40000, 9, &payload),
        ),
    };
    frames::pad_to(f, 60)
}

/// A legitimate ARP reply from the VM (unicast, so no storm-control bucket).
pub fn arp_reply() -> Vec<u8> {
    frames::pad_to(
        frames::arp_frame(frames::ARP_REPLY, VM_MAC, V4_BOUND, OTHER_MAC, V4_DST),
        60,
    )
}

pub fn net(a: IpAddr) -> IpNet {
    IpNet {
        addr: a,
        len: if a.is_ipv4() { 32 } else { 128 },
    }
}

/// A binding of VM_MAC with `ips` (normalized: sorted, unique).
pub fn binding(ips: Vec<IpNet>) -> Result<Binding> {
    Binding::new(Mac(VM_MAC), ips)
        .normalize()
        .map_err(|e| anyhow!("{e}"))
}

/// A portguard instance: its own pin directory (so its own maps), the
/// portguard program and the floor programs loaded against the same maps.
pub struct Instance {
    pub pinned: Pinned,
    /// Holds `noop_pass` and `noop_drop`.
    pub floors: Ebpf,
    pub dir: PinDir,
}

impl Instance {
    pub fn new(tag: &str) -> Result<Instance> {
        Instance::with_max_addrs(tag, None)
    }

    /// An instance whose V4_ADDRS/V6_ADDRS are created with `max_addrs`
    /// entries instead of MAX_ADDRS (an experiment on the bucket array's size:
    /// the maps are created and pinned first, then `Pinned::open` reuses them).
    pub fn with_max_addrs(tag: &str, max_addrs: Option<u32>) -> Result<Instance> {
        let dir = PinDir::new(tag)?;
        if let Some(m) = max_addrs {
            std::fs::create_dir_all(dir.maps())?;
            EbpfLoader::new()
                .map_max_entries("V4_ADDRS", m)
                .map_max_entries("V6_ADDRS", m)
                .default_map_pin_directory(dir.maps())
                .load(EBPF_OBJECT)
                .context("creating resized address maps")?;
        }
        let mut pinned = Pinned::open(&dir.path)?;
        pinned.program()?;
        // The object's maps are declared pinned by name: point this second
        // loader at the same maps directory so it reuses them rather than
        // creating (and pinning) another set somewhere global.
        let mut floors = EbpfLoader::new()
            .default_map_pin_directory(dir.maps())
            .load(EBPF_OBJECT)
            .context("loading the floor programs")?;
        for name in ["noop_pass", "noop_drop"] {
            let p: &mut Xdp = floors
                .program_mut(name)
                .ok_or_else(|| anyhow!("the XDP object has no program {name}"))?
                .try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        let p: &mut SchedClassifier = floors
            .program_mut("noop_tc")
            .ok_or_else(|| anyhow!("the object has no program noop_tc"))?
            .try_into()?;
        p.load().context("loading noop_tc")?;
        Ok(Instance {
            pinned,
            floors,
            dir,
        })
    }

    pub fn portguard(&mut self) -> Result<&Xdp> {
        Ok(&*self.pinned.program()?)
    }

    pub fn floor(&self, name: &str) -> Result<&Xdp> {
        let p = self
            .floors
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?;
        Ok(p.try_into()?)
    }

    /// portguard's tc program (`--mode tc`).
    pub fn portguard_tc(&mut self) -> Result<&SchedClassifier> {
        Ok(&*self.pinned.skb_program()?)
    }

    /// The tc floor, `noop_tc` (returns "next").
    pub fn tc_floor(&self) -> Result<&SchedClassifier> {
        let p = self
            .floors
            .program("noop_tc")
            .ok_or_else(|| anyhow!("no program noop_tc"))?;
        Ok(p.try_into()?)
    }
}

/// A program to time: XDP (run on `ifindex`) or tc (run on lo, the skb
/// test run's own device).
#[derive(Clone, Copy)]
pub enum Prog<'a> {
    Xdp(&'a Xdp),
    Tc(&'a SchedClassifier),
}

/// Plain BPF_PROG_TEST_RUN of one frame `repeat` times on `ifindex`:
/// (XDP action, kernel-measured ns per run).
pub fn plain(prog: &Xdp, ifindex: u32, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let (ret, d) = portguard::testrun::time_frame(prog, ifindex, frame, repeat)?;
    Ok((ret, d.as_nanos() as f64))
}

/// One plain run timed three ways (ns per repeat): the kernel's own figure
/// (whole ns: the kernel divides its total by `repeat` in integers), and the
/// calling thread's CPU time and the wall time of the whole syscall divided
/// by `repeat` (sub-ns resolution; the syscall's fixed cost, a few us,
/// spreads over the repeat: 0.001 ns at 2M).
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    pub action: u32,
    pub kernel_ns: f64,
    /// Thread CPU time: excludes time this thread spent preempted, which the
    /// wall clock (and the kernel's clock, between its resched points) count.
    pub cpu_ns: f64,
    pub wall_ns: f64,
}

/// [`plain`] (or its tc twin) timed by the kernel, the thread CPU clock and the wall clock.
pub fn plain_precise(prog: Prog, ifindex: u32, frame: &[u8], repeat: u32) -> Result<Timed> {
    let c0 = thread_cpu_ns();
    let t = Instant::now();
    let (action, kernel_ns) = match prog {
        Prog::Xdp(x) => plain(x, ifindex, frame, repeat)?,
        Prog::Tc(c) => {
            let (ret, d) = portguard::testrun::time_skb(c, frame, repeat)?;
            (ret, d.as_nanos() as f64)
        }
    };
    let wall = t.elapsed().as_nanos() as f64;
    let cpu = thread_cpu_ns().saturating_sub(c0) as f64;
    Ok(Timed {
        action,
        kernel_ns,
        cpu_ns: cpu / repeat as f64,
        wall_ns: wall / repeat as f64,
    })
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `xdp_live_frames` run: `frames` copies of `frame` arrive on `ifindex` (a
/// device of the calling thread's netns) in batches of 64; frames the program
/// passes go up the real stack inside the timed loop. Returns ns per frame.
pub fn live(prog: &Xdp, ifindex: u32, frame: &[u8], frames: u32) -> Result<f64> {
    let ctx = portguard::testrun::xdp_md(ifindex, frame.len());
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN (xdp_live_frames)")?;
    Ok(r.duration.as_nanos() as f64)
}

/// Checks the action of a plain run.
pub fn expect(what: &str, got: u32, want: u32) -> Result<()> {
    if got != want {
        let name = |a| match a {
            0 => "XDP_ABORTED",
            1 => "XDP_DROP",
            2 => "XDP_PASS",
            _ => "other",
        };
        bail!("{what}: expected {} got {}", name(want), name(got));
    }
    Ok(())
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

//! The pinned state under a pin directory: maps (bindings, counters, bucket
//! state, events), the program and one XDP link per attached interface.
//!
//! Layout:
//! ```text
//! <pin-dir>/maps/{PORTS,PORT_INDEX,CONFIGS,V4_ADDRS,V6_ADDRS,V4_PREFIXES,V6_PREFIXES,
//!                  ADDR_INDEX,STATS,RATE,EVENTS,SKB_RETRY,META}
//! <pin-dir>/prog             the last loaded XDP program
//! <pin-dir>/prog-skb         the last loaded tc program of the checks (`--mode tc`)
//! <pin-dir>/prog-tc          the last loaded tc VLAN program (docs/vlan-offload.md)
//! <pin-dir>/links/<iface>    the bpf_link attaching the checks to <iface>: an
//!                            XDP link, or a tcx link in tc mode
//! <pin-dir>/links-tc/<iface> the tcx link attaching the tc VLAN program to <iface>
//!                            (XDP modes only)
//! <pin-dir>/links-new/       a new link's pin before it is renamed over links/<iface>
//! ```
//! A rebind is atomic for the data path: new address entries are written
//! under the next generation, the new record (which names that generation)
//! is written into the idle half of the port's slot in `CONFIGS`, `PORTS` and
//! `PORT_INDEX` are flipped to it (one bit of one map value each), then the
//! previous generation is deleted. `ADDR_INDEX` lists each generation's
//! addresses so none of this scans the (large) address maps.
use std::{
    collections::BTreeSet,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{
        lpm_trie::Key, Array, HashMap, IterableMap, LpmTrie, Map, MapData, MapError, MapInfo,
        PerCpuArray, PerCpuValues, ProgramArray,
    },
    programs::{SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use filter_common::{
    flags, IndexEntry, IndexKey, PortConfig, PortRef, PortStats, RateState, V4Key, V6Key,
    DEFAULT_MAX_PORTS, LAYOUT_VERSION, LPM_PORT_BITS, MAX_PORTS_LIMIT, PORT_INDEX_SLOTS,
};

mod bulk;

pub use bulk::{NewOutcome, NewPort};

use crate::{
    batch,
    binding::{fixed_str, host_addrs, str_from_fixed, Binding},
    bpffs,
    parse::IpNet,
    EBPF_OBJECT,
};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/portguard";
pub const PROGRAM_NAME: &str = "portguard";
/// The tc ingress program policing VLAN tags carried in skb metadata.
pub const VLAN_PROGRAM_NAME: &str = "portguard_vlan";
/// The frame checks as a tc ingress program (`attach --mode tc`).
pub const SKB_PROGRAM_NAME: &str = "portguard_skb";
/// Per-pin-dir change locks (bpffs cannot hold regular files).
pub const LOCK_DIR: &str = "/run/portguard/locks";

/// One port as recorded in the maps.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub ifindex: u32,
    pub ifname: String,
    pub tenant: String,
    pub binding: Option<Binding>,
    /// 0 not attached, else `ATTACH_NATIVE`/`ATTACH_GENERIC`.
    pub attach_mode: u8,
    /// `crate::attach_mode::AttachReason` as stored.
    pub attach_reason: u8,
    pub slot: u32,
    pub generation: u32,
    /// Attached fail-closed by a `[[guard]]` pattern, no binding known yet.
    pub guarded: bool,
}

pub struct Pinned {
    dir: PathBuf,
    ebpf: Ebpf,
    ports: HashMap<MapData, u32, PortRef>,
    port_index: Array<MapData, PortRef>,
    configs: Array<MapData, PortConfig>,
    v4: HashMap<MapData, V4Key, u8>,
    v6: HashMap<MapData, V6Key, u8>,
    v4p: LpmTrie<MapData, V4Key, u8>,
    v6p: LpmTrie<MapData, V6Key, u8>,
    addr_index: HashMap<MapData, IndexKey, IndexEntry>,
    stats: PerCpuArray<MapData, PortStats>,
    rate: Array<MapData, RateState>,
    program_loaded: bool,
    /// Port slots of these maps (slot 0 reserved): fixed when they were created.
    capacity: u32,
    /// The slots in use as last read from PORTS, with the allocation epoch
    /// (see [`Pinned::new_slot`]) at that time.
    slots: Option<(u64, BTreeSet<u32>)>,
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Pinned {
    /// Opens (creating on first use, with the default capacity) the pinned
    /// maps under `dir`.
    pub fn open(dir: &Path) -> Result<Pinned> {
        Self::open_sized(dir, None)
    }

    /// Opens the pinned maps under `dir`, creating those that are missing
    /// sized for `max_ports` port slots (default [`DEFAULT_MAX_PORTS`]).
    /// Maps that exist keep the capacity they were created with: a different
    /// `max_ports` is only warned about (resizing means new maps, see
    /// docs/operations.md).
    pub fn open_sized(dir: &Path, max_ports: Option<u32>) -> Result<Pinned> {
        if let Some(n) = max_ports {
            check_max_ports(n)?;
        }
        bpffs::ensure(dir)?;
        let maps_dir = dir.join("maps");
        fs::create_dir_all(&maps_dir)
            .with_context(|| format!("cannot create pin directory {}", maps_dir.display()))?;
        check_layout(&maps_dir)?;
        let capacity = match (pinned_capacity(&maps_dir)?, max_ports) {
            (Some(have), Some(want)) if have != want => {
                log::warn!(
                    "the maps under {} were created for {have} port slots; --max-ports {want} \
                     applies only to new maps and is ignored",
                    maps_dir.display()
                );
                have
            }
            (Some(have), _) => have,
            (None, want) => want.unwrap_or(DEFAULT_MAX_PORTS),
        };

        let tick = tick_ns()?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .override_global("TICK_NS", &tick, true)
            // Created with these sizes, or opened as pinned: aya then bounds
            // its own accesses by them, so they must be the pinned sizes.
            .map_max_entries("PORTS", capacity)
            .map_max_entries("CONFIGS", 2 * capacity)
            .map_max_entries("STATS", capacity)
            .map_max_entries("RATE", capacity)
            .load(EBPF_OBJECT)
            .with_context(|| {
                format!(
                    "cannot create or open the maps under {}",
                    maps_dir.display()
                )
            })?;

        let mut meta: Array<MapData, u32> = take(&mut ebpf, "META")?;
        let version = meta.get(&0, 0).context("reading META")?;
        if version == 0 {
            meta.set(0, LAYOUT_VERSION, 0).context("writing META")?;
        }
        Ok(Pinned {
            dir: dir.to_path_buf(),
            ports: take(&mut ebpf, "PORTS")?,
            port_index: take(&mut ebpf, "PORT_INDEX")?,
            configs: take(&mut ebpf, "CONFIGS")?,
            v4: take(&mut ebpf, "V4_ADDRS")?,
            v6: take(&mut ebpf, "V6_ADDRS")?,
            v4p: take(&mut ebpf, "V4_PREFIXES")?,
            v6p: take(&mut ebpf, "V6_PREFIXES")?,
            addr_index: take(&mut ebpf, "ADDR_INDEX")?,
            stats: take(&mut ebpf, "STATS")?,
            rate: take(&mut ebpf, "RATE")?,
            ebpf,
            program_loaded: false,
            capacity,
            slots: None,
        })
    }

    /// Port slots of these maps (`--max-ports` when they were created).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Ports these maps hold: every slot but the reserved slot 0.
    pub fn port_capacity(&self) -> u32 {
        self.capacity - 1
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn link_dir(&self) -> PathBuf {
        self.dir.join("links")
    }

    pub fn link_path(&self, ifname: &str) -> PathBuf {
        self.link_dir().join(ifname)
    }

    /// The XDP program, loaded (verified) on first use.
    pub fn program(&mut self) -> Result<&mut Xdp> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("the XDP object has no program {PROGRAM_NAME}"))?
            .try_into()
            .context("program portguard is not an XDP program")?;
        if !self.program_loaded {
            prog.load()
                .map_err(|e| compact_load_error(&e.to_string()))?;
            self.program_loaded = true;
        }
        Ok(prog)
    }

    /// The tc ingress program for VLAN tags in skb metadata, loaded on first use.
    pub fn vlan_program(&mut self) -> Result<&mut SchedClassifier> {
        self.classifier(VLAN_PROGRAM_NAME, "the tc VLAN program")
    }

    /// The frame checks as a tc ingress program (`attach --mode tc`), loaded
    /// on first use and then set as its own retry (`SKB_RETRY[0]`, the tail
    /// call a paged skb takes once its headers are pulled in).
    pub fn skb_program(&mut self) -> Result<&mut SchedClassifier> {
        let fresh = self
            .ebpf
            .program(SKB_PROGRAM_NAME)
            .is_some_and(|p| p.fd().is_err());
        if fresh {
            let fd = self
                .classifier(SKB_PROGRAM_NAME, "the tc program")?
                .fd()?
                .try_clone()
                .context("duplicating the tc program's fd")?;
            let map = self
                .ebpf
                .map_mut("SKB_RETRY")
                .ok_or_else(|| anyhow!("the object has no map SKB_RETRY"))?;
            let mut retry =
                ProgramArray::try_from(map).context("SKB_RETRY is not a program array")?;
            retry
                .set(0, &fd, 0)
                .context("setting SKB_RETRY[0] to the tc program (BPF_MAP_UPDATE_ELEM)")?;
        }
        self.classifier(SKB_PROGRAM_NAME, "the tc program")
    }

    /// Whether program `name` of the object was loaded by this handle.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.ebpf.program(name).is_some_and(|p| p.fd().is_ok())
    }

    fn classifier(&mut self, name: &str, what: &str) -> Result<&mut SchedClassifier> {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("the object has no program {name}"))?
            .try_into()
            .with_context(|| format!("program {name} is not a tc classifier"))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| {
                anyhow!(
                    "{}",
                    compact_load_error(&e.to_string()).to_string().replacen(
                        "the XDP program",
                        what,
                        1
                    )
                )
            })?;
        }
        Ok(prog)
    }

    /// The EVENTS ring buffer map (can be taken once per `Pinned`).
    pub fn take_events(&mut self) -> Result<Map> {
        self.ebpf
            .take_map("EVENTS")
            .ok_or_else(|| anyhow!("the EVENTS map was already taken"))
    }

    /// The live record of `ifindex`, as the data path sees it.
    pub fn config(&self, ifindex: u32) -> Result<Option<PortConfig>> {
        match self.live_ref(ifindex)? {
            Some(r) => Ok(Some(
                self.configs.get(&r.cfg, 0).context("reading CONFIGS")?,
            )),
            None => Ok(None),
        }
    }

    /// Where the data path finds the record of `ifindex`: its `PORT_INDEX`
    /// entry when that entry holds this port, else `PORTS`. Written `PORTS`
    /// first, `PORT_INDEX` second, so after an interrupted write this still
    /// names the record the data path uses.
    fn live_ref(&self, ifindex: u32) -> Result<Option<PortRef>> {
        self.live_ref_given(ifindex, self.index_entry(ifindex)?)
    }

    /// `live_ref` with the port's `PORT_INDEX` entry already read.
    fn live_ref_given(&self, ifindex: u32, e: PortRef) -> Result<Option<PortRef>> {
        if e.ifindex == ifindex && ifindex != 0 {
            return Ok(Some(e));
        }
        match self.ports.get(&ifindex, 0) {
            Ok(r) => Ok(Some(r)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading PORTS"),
        }
    }

    /// Makes `cfg` the live record of `ifindex`: written into the idle half
    /// of its slot in `CONFIGS` (the data path reads only the other half), then
    /// `PORTS` and `PORT_INDEX` are flipped to it. The flip changes the low
    /// bit of `PortRef::cfg` only, so no reader can see a mix of two records.
    fn put(&mut self, ifindex: u32, cfg: &PortConfig) -> Result<()> {
        let e = self.index_entry(ifindex)?;
        let next = match self.live_ref_given(ifindex, e)? {
            Some(r) if r.slot() == cfg.slot => r.cfg ^ 1,
            Some(r) => bail!(
                "port {ifindex} is in slot {} but its new record names slot {}",
                r.slot(),
                cfg.slot
            ),
            None => cfg.slot * 2,
        };
        self.configs.set(next, *cfg, 0).context("writing CONFIGS")?;
        let r = PortRef { ifindex, cfg: next };
        self.ports.insert(ifindex, r, 0).context("updating PORTS")?;
        // Claim the index entry when it is free, ours, or left by a port that
        // no longer exists; else this port is found through PORTS. (`e` is
        // current: every writer holds the change lock.)
        let i = index_slot(ifindex);
        let claim = e.ifindex == ifindex
            || e.ifindex == 0
            || matches!(self.ports.get(&e.ifindex, 0), Err(MapError::KeyNotFound));
        if claim {
            if e.ifindex != ifindex && e.ifindex != 0 {
                // Through zero, so no reader pairs our ifindex with its record.
                self.port_index
                    .set(i, PortRef::default(), 0)
                    .context("updating PORT_INDEX")?;
            }
            self.port_index
                .set(i, r, 0)
                .context("updating PORT_INDEX")?;
        }
        Ok(())
    }

    /// The `PORT_INDEX` entry that can hold `ifindex` (whichever port it holds).
    fn index_entry(&self, ifindex: u32) -> Result<PortRef> {
        self.port_index
            .get(&index_slot(ifindex), 0)
            .context("reading PORT_INDEX")
    }

    /// Removes the record of `ifindex` (index entry first: a reader then
    /// finds it through PORTS, then not at all).
    fn remove(&mut self, ifindex: u32) -> Result<()> {
        if self.slots.is_some() {
            let slot = self.config(ifindex)?.map(|c| c.slot);
            if let (Some((_, used)), Some(slot)) = (self.slots.as_mut(), slot) {
                used.remove(&slot);
            }
        }
        let e = self.index_entry(ifindex)?;
        if e.ifindex == ifindex {
            self.port_index
                .set(index_slot(ifindex), PortRef::default(), 0)
                .context("clearing PORT_INDEX")?;
        }
        match self.ports.remove(&ifindex) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).context("removing from PORTS"),
        }
    }

    /// Serializes changes to this pin dir across processes (CLI, apply, daemon):
    /// two concurrent rebinds of one port would otherwise race on its generation.
    /// Held until the returned file is dropped. `bind`, `unbind` and `mark_*`
    /// take it themselves: do not hold it while calling them (flock is per open
    /// file, so a second acquisition in the same process would deadlock).
    pub fn change_lock(&self) -> Result<fs::File> {
        let dir = Path::new(LOCK_DIR);
        fs::create_dir_all(dir).with_context(|| format!("cannot create {LOCK_DIR}"))?;
        let name: String = self
            .dir
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("{name}.lock"));
        // Read and written: it also holds the slot epoch (`new_slot`).
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        f.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(f)
    }

    /// Sets the binding of `ifindex` to exactly `b`; returns the previous one.
    pub fn bind(&mut self, ifindex: u32, ifname: &str, b: &Binding) -> Result<Option<Binding>> {
        b.check_mac()?;
        let _lock = self.change_lock()?;
        let old = self.config(ifindex)?;
        let live = old
            .as_ref()
            .filter(|c| c.flags & flags::BOUND != 0)
            .map(|c| c.generation);
        let previous = match (&old, live) {
            (Some(c), Some(_)) => Some(self.binding_of(c)?),
            _ => None,
        };
        let generation = match &old {
            Some(c) => next_generation(c.generation),
            None => 1,
        };
        // Leftovers of an interrupted bind or unbind must not become visible
        // with the flip: clear the target generation (and an unbound record's).
        self.delete_gen(ifindex, generation)?;
        if let Some(c) = old.as_ref().filter(|_| live.is_none()) {
            self.delete_gen(ifindex, c.generation)?;
        }
        let mut cfg = b.port_config(ifindex, ifname);
        cfg.generation = generation;
        match &old {
            Some(c) => {
                cfg.slot = c.slot;
                cfg.attach_mode = c.attach_mode;
                cfg.attach_reason = c.attach_reason;
            }
            None => cfg.slot = self.new_slot(&_lock)?,
        }
        self.write_gen(ifindex, generation, &b.ips, cfg.flags)?;
        self.put(ifindex, &cfg).context("the binding flip")?;
        // The data path now only sees `generation`: drop the previous one.
        if let Some(g) = live {
            self.delete_gen(ifindex, g)?;
        }
        Ok(previous)
    }

    /// Removes the binding; an attached port stays fail-closed (`unbound_port`).
    pub fn unbind(&mut self, ifindex: u32) -> Result<Option<Binding>> {
        let _lock = self.change_lock()?;
        let Some(old) = self.config(ifindex)? else {
            return Ok(None);
        };
        let previous = if old.flags & flags::BOUND != 0 {
            Some(self.binding_of(&old)?)
        } else {
            None
        };
        // Fail closed first (an unbound record keeping the generation, so an
        // interrupted cleanup is found again), then drop the addresses, then
        // the record itself unless the port stays attached.
        let mut rec = attach_only_record(
            ifindex,
            &str_from_fixed(&old.ifname),
            old.slot,
            old.attach_mode,
        );
        rec.generation = old.generation;
        self.put(ifindex, &rec)?;
        self.delete_gen(ifindex, old.generation)?;
        if old.attach_mode == 0 {
            self.remove(ifindex)?;
        }
        Ok(previous)
    }

    /// Records that `ifindex` is attached (creating an unbound, fail-closed record if needed).
    pub fn mark_attached(&mut self, ifindex: u32, ifname: &str, mode: u8) -> Result<bool> {
        let _lock = self.change_lock()?;
        match self.config(ifindex)? {
            Some(mut c) => {
                c.attach_mode = mode;
                c.ifname = fixed_str(ifname);
                self.put(ifindex, &c)?;
                Ok(false)
            }
            None => {
                let slot = self.new_slot(&_lock)?;
                let rec = attach_only_record(ifindex, ifname, slot, mode);
                self.put(ifindex, &rec)?;
                Ok(true)
            }
        }
    }

    /// Records why `ifindex` runs in its attach mode (`AttachReason`).
    pub fn set_attach_reason(&mut self, ifindex: u32, reason: u8) -> Result<()> {
        let _lock = self.change_lock()?;
        if let Some(mut c) = self.config(ifindex)? {
            c.attach_reason = reason;
            self.put(ifindex, &c)?;
        }
        Ok(())
    }

    /// Records that `ifindex` is no longer attached; drops the record if it holds no binding.
    pub fn mark_detached(&mut self, ifindex: u32) -> Result<()> {
        let _lock = self.change_lock()?;
        if let Some(mut c) = self.config(ifindex)? {
            if c.flags & flags::BOUND == 0 {
                self.remove(ifindex)?;
            } else {
                c.attach_mode = 0;
                c.attach_reason = 0;
                self.put(ifindex, &c)?;
            }
        }
        Ok(())
    }

    /// Removes the record of `ifindex` and its addresses, whatever it holds:
    /// for an interface that no longer exists (a stale record).
    pub fn forget(&mut self, ifindex: u32) -> Result<()> {
        let _lock = self.change_lock()?;
        let Some(c) = self.config(ifindex)? else {
            return Ok(());
        };
        self.remove(ifindex)?;
        self.delete_gen(ifindex, c.generation)
    }

    /// The live record of every port (no addresses read: cheap).
    pub fn records(&self) -> Result<Vec<PortConfig>> {
        let mut out = Vec::new();
        for item in self.ports.keys() {
            let ifindex = item.context("iterating PORTS")?;
            if let Some(c) = self.config(ifindex)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Rewrites the live record of `ifindex` through `f` (atomically, like a
    /// rebind). Low level, for tools and benchmarks: `bind` is the way to
    /// change a binding. False when the port has no record.
    pub fn edit_record(&mut self, ifindex: u32, f: impl FnOnce(&mut PortConfig)) -> Result<bool> {
        let _lock = self.change_lock()?;
        let Some(mut c) = self.config(ifindex)? else {
            return Ok(false);
        };
        f(&mut c);
        self.put(ifindex, &c)?;
        Ok(true)
    }

    pub fn port(&self, ifindex: u32) -> Result<Option<PortInfo>> {
        match self.config(ifindex)? {
            Some(c) => Ok(Some(self.info(&c)?)),
            None => Ok(None),
        }
    }

    /// Every port with a record, sorted by interface name.
    pub fn ports(&self) -> Result<Vec<PortInfo>> {
        let mut out = Vec::new();
        for item in self.ports.keys() {
            let ifindex = item.context("iterating PORTS")?;
            if let Some(c) = self.config(ifindex)? {
                out.push(self.info(&c)?);
            }
        }
        out.sort_by(|a, b| a.ifname.cmp(&b.ifname).then(a.ifindex.cmp(&b.ifindex)));
        Ok(out)
    }

    /// The port's counters summed over CPUs (zero when it has no record).
    pub fn counters(&self, ifindex: u32) -> Result<PortStats> {
        match self.config(ifindex)? {
            Some(c) => self.slot_counters(c.slot),
            None => Ok(PortStats::ZERO),
        }
    }

    /// Counters of a slot (0 = frames on interfaces with no record).
    pub fn slot_counters(&self, slot: u32) -> Result<PortStats> {
        let per_cpu = self.stats.get(&slot, 0).context("reading STATS")?;
        let mut sum = PortStats::ZERO;
        for s in per_cpu.iter() {
            add_stats(&mut sum, s);
        }
        Ok(sum)
    }

    fn info(&self, c: &PortConfig) -> Result<PortInfo> {
        let binding = if c.flags & flags::BOUND != 0 {
            Some(self.binding_of(c)?)
        } else {
            None
        };
        Ok(PortInfo {
            ifindex: c.ifindex,
            ifname: str_from_fixed(&c.ifname),
            tenant: str_from_fixed(&c.tenant),
            binding,
            attach_mode: c.attach_mode,
            attach_reason: c.attach_reason,
            slot: c.slot,
            generation: c.generation,
            guarded: c.flags & (flags::GUARDED | flags::BOUND) == flags::GUARDED,
        })
    }

    fn binding_of(&self, c: &PortConfig) -> Result<Binding> {
        let nets = self
            .gen_index(c.ifindex, c.generation)?
            .into_iter()
            .map(|e| index_net(&e))
            .collect();
        Ok(Binding::from_config(c, nets))
    }

    /// The index entries of one generation of a port, in index order. Entries
    /// are written in ascending and deleted in descending order, so whatever an
    /// interrupted writer leaves is always a prefix 0..n of the index.
    fn gen_index(&self, ifindex: u32, generation: u32) -> Result<Vec<IndexEntry>> {
        let mut out = Vec::new();
        for idx in 0.. {
            let key = IndexKey {
                ifindex,
                generation,
                idx,
            };
            match self.addr_index.get(&key, 0) {
                Ok(e) => out.push(e),
                Err(MapError::KeyNotFound) => break,
                Err(e) => return Err(e).context("reading ADDR_INDEX"),
            }
        }
        Ok(out)
    }

    /// Writes a generation's addresses, chunk by chunk: a chunk's index
    /// entries before its addresses, so an interrupted writer leaves nothing
    /// the index does not list. Host addresses go to `V*_ADDRS` only when the
    /// record's `HAS_V*_TABLE` flag says they are not inline (`rec_flags`).
    fn write_gen(
        &mut self,
        ifindex: u32,
        generation: u32,
        nets: &[IpNet],
        rec_flags: u16,
    ) -> Result<()> {
        for (c, chunk) in nets.chunks(batch::CHUNK).enumerate() {
            let base = c * batch::CHUNK;
            let keys: Vec<IndexKey> = (0..chunk.len())
                .map(|i| IndexKey {
                    ifindex,
                    generation,
                    idx: (base + i) as u32,
                })
                .collect();
            let entries: Vec<IndexEntry> = chunk.iter().map(net_index).collect();
            batch::update(self.addr_index.map(), &keys, &entries).context("writing ADDR_INDEX")?;
            let (mut v4, mut v6) = host_keys(ifindex, generation, chunk);
            if rec_flags & flags::HAS_V4_TABLE == 0 {
                v4.clear();
            }
            if rec_flags & flags::HAS_V6_TABLE == 0 {
                v6.clear();
            }
            batch::update(self.v4.map(), &v4, &vec![1u8; v4.len()])
                .context("writing V4_ADDRS (map full?)")?;
            batch::update(self.v6.map(), &v6, &vec![1u8; v6.len()])
                .context("writing V6_ADDRS (map full?)")?;
            for net in chunk.iter().filter(|n| !n.is_host()) {
                self.insert_prefix(ifindex, generation, net)?;
            }
        }
        Ok(())
    }

    /// Deletes a generation's addresses, last chunk first, each chunk's
    /// addresses before its index entries (the index stays a prefix). Inline
    /// addresses have no entries; deleting them anyway finds nothing (ENOENT
    /// is skipped) and keeps this independent of the record.
    fn delete_gen(&mut self, ifindex: u32, generation: u32) -> Result<()> {
        let nets: Vec<IpNet> = self
            .gen_index(ifindex, generation)?
            .iter()
            .map(index_net)
            .collect();
        let chunks: Vec<(usize, &[IpNet])> = nets
            .chunks(batch::CHUNK)
            .enumerate()
            .map(|(c, ch)| (c * batch::CHUNK, ch))
            .collect();
        for (base, chunk) in chunks.into_iter().rev() {
            for net in chunk.iter().filter(|n| !n.is_host()) {
                self.remove_prefix(ifindex, generation, net)?;
            }
            let (v4, v6) = host_keys(ifindex, generation, chunk);
            batch::delete(self.v4.map(), &v4).context("deleting from V4_ADDRS")?;
            batch::delete(self.v6.map(), &v6).context("deleting from V6_ADDRS")?;
            let keys: Vec<IndexKey> = (0..chunk.len())
                .rev()
                .map(|i| IndexKey {
                    ifindex,
                    generation,
                    idx: (base + i) as u32,
                })
                .collect();
            batch::delete(self.addr_index.map(), &keys).context("deleting from ADDR_INDEX")?;
        }
        Ok(())
    }

    /// Prefixes go through the LPM tries one by one (they do not batch, and
    /// are few); host addresses are batched by `write_gen`/`delete_gen`.
    fn insert_prefix(&mut self, ifindex: u32, generation: u32, net: &IpNet) -> Result<()> {
        match prefix_key(ifindex, generation, net) {
            PrefixKey::V4(k) => self.v4p.insert(&k, 1, 0),
            PrefixKey::V6(k) => self.v6p.insert(&k, 1, 0),
        }
        .with_context(|| format!("inserting {net} (prefix maps full?)"))
    }

    fn remove_prefix(&mut self, ifindex: u32, generation: u32, net: &IpNet) -> Result<()> {
        ignore_missing(match prefix_key(ifindex, generation, net) {
            PrefixKey::V4(k) => self.v4p.remove(&k),
            PrefixKey::V6(k) => self.v6p.remove(&k),
        })
        .with_context(|| format!("deleting {net}"))
    }

    /// Lowest slot no port record uses; its counters and buckets are reset.
    /// A free STATS/RATE slot, reset. Scanning PORTS for the slots in use
    /// costs two syscalls per port, so a sync of N new ports would be
    /// O(N^2): the scan is cached, and every allocation (by any process, all
    /// under the change lock) bumps an epoch kept in the lock file; a cache
    /// from another epoch is rebuilt. Frees by other processes only leave a
    /// slot unused here until the next rebuild, never handed out twice.
    fn new_slot(&mut self, lock: &fs::File) -> Result<u32> {
        let epoch = read_slot_epoch(lock)?;
        let mut used = match self.slots.take() {
            Some((e, used)) if e == epoch => used,
            _ => {
                let mut used = BTreeSet::new();
                for item in self.ports.iter() {
                    let (_, r) = item.context("iterating PORTS")?;
                    used.insert(r.slot());
                }
                used
            }
        };
        let slot = (1..self.capacity)
            .find(|s| !used.contains(s))
            .ok_or_else(|| self.full())?;
        used.insert(slot);
        let epoch = self.bump_slot_epoch(lock)?;
        self.slots = Some((epoch, used));
        self.reset_stats(&[slot])?;
        self.rate
            .set(slot, RateState::default(), 0)
            .context("resetting RATE slot")?;
        Ok(slot)
    }

    /// The error for a port that finds every slot in use.
    fn full(&self) -> anyhow::Error {
        anyhow!(
            "all {} port slots of {} are in use (its maps were created with \
             --max-ports {}; a larger capacity needs new maps, see docs/operations.md)",
            self.port_capacity(),
            self.dir.display(),
            self.capacity
        )
    }

    /// Says "slots were allocated" to every other process's cache (see
    /// [`Pinned::new_slot`]); returns the new epoch.
    fn bump_slot_epoch(&self, lock: &fs::File) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        let epoch = read_slot_epoch(lock)?.wrapping_add(1);
        lock.write_at(&epoch.to_le_bytes(), 0)
            .context("writing the slot epoch to the lock file")?;
        Ok(epoch)
    }

    /// Zeroes the counters of `slots` (on every CPU).
    fn reset_stats(&mut self, slots: &[u32]) -> Result<()> {
        let n = aya::util::nr_cpus().map_err(|(m, e)| anyhow!("{m}: {e}"))?;
        for &slot in slots {
            let zeros = PerCpuValues::try_from(vec![PortStats::ZERO; n])
                .map_err(|e| anyhow!("building per-CPU zero values: {e}"))?;
            self.stats
                .set(slot, zeros, 0)
                .context("resetting STATS slot")?;
        }
        Ok(())
    }
}

/// The slot epoch kept in the change-lock file (0 when never written).
fn read_slot_epoch(lock: &fs::File) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 8];
    match lock.read_at(&mut buf, 0) {
        Ok(8) => Ok(u64::from_le_bytes(buf)),
        Ok(_) => Ok(0),
        Err(e) => Err(e).context("reading the slot epoch from the lock file"),
    }
}

enum PrefixKey {
    V4(Key<V4Key>),
    V6(Key<V6Key>),
}

/// The LPM key of a prefix: (ifindex, generation) then the prefix bits.
fn prefix_key(ifindex: u32, generation: u32, net: &IpNet) -> PrefixKey {
    let len = LPM_PORT_BITS + net.len as u32;
    match net.addr {
        IpAddr::V4(a) => PrefixKey::V4(Key::new(
            len,
            V4Key {
                ifindex,
                generation,
                addr: a.octets(),
            },
        )),
        IpAddr::V6(a) => PrefixKey::V6(Key::new(
            len,
            V6Key {
                ifindex,
                generation,
                addr: a.octets(),
            },
        )),
    }
}

/// The exact-address keys of `nets` (prefixes are skipped).
fn host_keys(ifindex: u32, generation: u32, nets: &[IpNet]) -> (Vec<V4Key>, Vec<V6Key>) {
    let (v4, v6) = host_addrs(nets);
    (
        v4.into_iter()
            .map(|addr| V4Key {
                ifindex,
                generation,
                addr,
            })
            .collect(),
        v6.into_iter()
            .map(|addr| V6Key {
                ifindex,
                generation,
                addr,
            })
            .collect(),
    )
}

fn net_index(net: &IpNet) -> IndexEntry {
    let mut addr = [0u8; 16];
    let family = match net.addr {
        IpAddr::V4(a) => {
            addr[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            addr = a.octets();
            6
        }
    };
    IndexEntry {
        family,
        prefix_len: net.len,
        _pad: [0; 2],
        addr,
    }
}

fn index_net(e: &IndexEntry) -> IpNet {
    let addr = if e.family == 4 {
        IpAddr::from([e.addr[0], e.addr[1], e.addr[2], e.addr[3]])
    } else {
        IpAddr::from(e.addr)
    };
    IpNet {
        addr,
        len: e.prefix_len,
    }
}

/// A delete of an entry that is already gone is fine (e.g. the leftovers of
/// an interrupted bind, whose index lists an address it never wrote). Hash
/// maps report it as `KeyNotFound`, the LPM trie as a raw ENOENT.
fn ignore_missing(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

fn attach_only_record(ifindex: u32, ifname: &str, slot: u32, mode: u8) -> PortConfig {
    PortConfig {
        mac: [0; 6],
        flags: 0,
        generation: 0,
        ifindex,
        eui64_ll: [0; 16],
        bcast: filter_common::RateCfg::DISABLED,
        mcast: filter_common::RateCfg::DISABLED,
        arp: filter_common::RateCfg::DISABLED,
        events: crate::binding::DEFAULT_EVENTS.cfg(),
        ethertypes: [0; filter_common::MAX_ETHERTYPES],
        vlans: [0; filter_common::MAX_VLANS],
        n_ethertypes: 0,
        n_vlans: 0,
        attach_mode: mode,
        attach_reason: 0,
        _pad: [0; 6],
        slot,
        tenant: [0; 32],
        ifname: fixed_str(ifname),
        v4_inline: [0; filter_common::MAX_INLINE_ADDRS],
        v6_inline: [[0; 16]; filter_common::MAX_INLINE_ADDRS],
        n_v4_inline: 0,
        n_v6_inline: 0,
    }
}

pub fn add_stats(sum: &mut PortStats, s: &PortStats) {
    let PortStats {
        passed,
        dropped,
        would_drop,
        sampled_out,
        events_lost,
    } = s;
    sum.passed.packets += passed.packets;
    sum.passed.bytes += passed.bytes;
    for (d, s) in sum.dropped.iter_mut().zip(dropped) {
        d.packets += s.packets;
        d.bytes += s.bytes;
    }
    for (d, s) in sum.would_drop.iter_mut().zip(would_drop) {
        d.packets += s.packets;
        d.bytes += s.bytes;
    }
    sum.sampled_out += sampled_out;
    sum.events_lost += events_lost;
}

/// A capacity `--max-ports` may ask for (the CLI's parser checks the same
/// range; this is for library callers of [`Pinned::open_sized`]).
fn check_max_ports(n: u32) -> Result<()> {
    if !(2..=MAX_PORTS_LIMIT).contains(&n) {
        bail!("--max-ports {n} is out of range: a pin dir holds 2 to {MAX_PORTS_LIMIT} port slots");
    }
    Ok(())
}

/// The port capacity of the maps under `maps_dir`, if any of them exist:
/// `PORTS`, `STATS` and `RATE` have one entry per slot, `CONFIGS` two. A
/// set that disagrees (maps of different creators) is refused.
fn pinned_capacity(maps_dir: &Path) -> Result<Option<u32>> {
    let mut found: Option<(u32, &str)> = None;
    for (name, per_slot) in [("PORTS", 1), ("CONFIGS", 2), ("STATS", 1), ("RATE", 1)] {
        let path = maps_dir.join(name);
        if !path.exists() {
            continue;
        }
        let n = MapInfo::from_pin(&path)
            .with_context(|| format!("cannot open pinned map {}", path.display()))?
            .max_entries()
            / per_slot;
        match found {
            Some((m, other)) if m != n => bail!(
                "pinned maps in {} disagree on the port capacity ({other}: {m}, {name}: {n}); \
                 they were not created together",
                maps_dir.display()
            ),
            Some(_) => {}
            None => found = Some((n, name)),
        }
    }
    Ok(found.map(|(n, _)| n))
}

/// Refuses pinned maps written by a build with another layout.
fn check_layout(maps_dir: &Path) -> Result<()> {
    let meta = maps_dir.join("META");
    if !meta.exists() {
        return Ok(());
    }
    let data = MapData::from_pin(&meta)
        .with_context(|| format!("cannot open pinned map {}", meta.display()))?;
    let arr: Array<MapData, u32> = Array::try_from(Map::Array(data))
        .with_context(|| format!("{} is not an array map", meta.display()))?;
    let version = arr.get(&0, 0).context("reading META")?;
    if version != 0 && version != LAYOUT_VERSION {
        bail!(
            "pinned maps in {} use layout v{version} but this portguard uses v{LAYOUT_VERSION}; \
             refusing to reuse them. Migrate: save the bindings (`show --json`), detach every \
             port with the old portguard, remove {}, then attach and bind with this one",
            maps_dir.display(),
            maps_dir.parent().unwrap_or(maps_dir).display()
        );
    }
    Ok(())
}

/// A load failure as one line: the verifier log is long, keep its verdict
/// (the last lines before the statistics) so the message stays readable.
fn compact_load_error(msg: &str) -> anyhow::Error {
    // The whole verifier log on request (the message keeps its last lines).
    if let Some(path) = std::env::var_os("PORTGUARD_VERIFIER_LOG") {
        let _ = fs::write(path, msg);
    }
    let Some((head, log)) = msg.split_once("Verifier output:") else {
        return anyhow!("loading the XDP program: {msg}");
    };
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("processed ")
                && !l.starts_with(':')
        })
        .collect();
    let tail = lines[lines.len().saturating_sub(2)..].join(" / ");
    anyhow!(
        "loading the XDP program: {} verifier: {tail}",
        head.trim().trim_end_matches('.')
    )
}

/// The kernel's tick (jiffy) in ns: the resolution of CLOCK_MONOTONIC_COARSE
/// (TICK_NSEC). The data path's rate buckets count time in jiffies times this.
fn tick_ns() -> Result<u64> {
    let ts = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
    let ns = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0);
    if ns == 0 || ns > 100_000_000 {
        bail!("clock_getres(CLOCK_MONOTONIC_COARSE) gave an implausible tick of {ns} ns");
    }
    Ok(ns)
}

/// The `PORT_INDEX` entry that can hold `ifindex`.
fn index_slot(ifindex: u32) -> u32 {
    ifindex & (PORT_INDEX_SLOTS - 1)
}

/// Removes a whole pin directory (detaching every pinned link in it).
pub fn remove_pin_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

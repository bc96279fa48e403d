//! Binding many new ports at once: an agent's initial sync or a state file
//! full of new ports. One change lock, one scan of `PORTS` and one batched
//! write per map for all of them, instead of ~20 syscalls, a lock-file open
//! and a slot scan per port.
//!
//! The data path's view stays what [`Pinned::bind`] gives, port by port: a
//! port's record becomes visible only through `PORTS` (then `PORT_INDEX`),
//! and every port's addresses and record are written before any `PORTS`
//! entry. A writer that dies midway leaves addresses and records no `PORTS`
//! entry names (invisible; the next bind of that ifindex clears them first),
//! or some ports completely bound: never a port bound without its addresses.
use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, Context, Result};
use aya::maps::IterableMap;
use filter_common::{IndexKey, PortRef, RateState};

use super::{host_keys, index_slot, net_index, Pinned, PortInfo};
use crate::{
    batch,
    binding::{str_from_fixed, Binding},
    error::one_line,
};

/// A port to bind that has no record yet (as its plan says).
#[derive(Clone, Copy, Debug)]
pub struct NewPort<'a> {
    pub ifindex: u32,
    pub ifname: &'a str,
    pub binding: &'a Binding,
}

/// What [`Pinned::bind_new`] did to one port.
#[derive(Debug)]
pub struct NewOutcome {
    /// The record before (Some only for a port that had one after all, e.g.
    /// created meanwhile by another command: it was bound with [`Pinned::bind`]).
    pub before: Option<PortInfo>,
    /// The record now, or why the port was not bound.
    pub result: Result<PortInfo, String>,
}

/// The generation a port's first binding is written under (as [`Pinned::bind`]).
const FIRST_GENERATION: u32 = 1;

impl Pinned {
    /// Binds `ports` (ifindexes without a record) as [`Pinned::bind`] would,
    /// one by one, but in one batch. A port that is refused (a group MAC, no
    /// free slot) fails alone; a port that has a record after all, or whose
    /// batched write fails, goes through [`Pinned::bind`]. Outcomes are in
    /// the order of `ports`.
    pub fn bind_new(&mut self, ports: &[NewPort]) -> Result<Vec<NewOutcome>> {
        let mut out: Vec<Option<NewOutcome>> = ports.iter().map(|_| None).collect();
        // Ports left for `bind` (after the lock is released: flock is per open file).
        let mut one_by_one: Vec<usize> = Vec::new();
        {
            let lock = self.change_lock()?;
            // Every record and slot in use, under the lock: what the plan saw may be stale.
            let mut slots = HashSet::new();
            let mut recorded = HashSet::new();
            for item in self.ports.iter() {
                let (ifindex, r) = item.context("iterating PORTS")?;
                slots.insert(r.slot());
                recorded.insert(ifindex);
            }
            let mut todo: Vec<(usize, u32)> = Vec::new(); // (index in `ports`, slot)
            let mut next = 1;
            for (i, np) in ports.iter().enumerate() {
                if let Err(e) = np.binding.check_mac() {
                    out[i] = Some(failed(anyhow::Error::from(e)));
                    continue;
                }
                if !recorded.insert(np.ifindex) {
                    one_by_one.push(i);
                    continue;
                }
                while next < self.capacity && slots.contains(&next) {
                    next += 1;
                }
                if next >= self.capacity {
                    recorded.remove(&np.ifindex);
                    out[i] = Some(failed(self.full()));
                    continue;
                }
                slots.insert(next);
                todo.push((i, next));
            }
            if !todo.is_empty() {
                // Before any slot is used, as `new_slot` does: another
                // process's cached scan is then rebuilt.
                let epoch = self.bump_slot_epoch(&lock)?;
                self.slots = None;
                match self.write_new(ports, &todo, &recorded) {
                    Ok(done) => {
                        self.slots = Some((epoch, slots.iter().copied().collect()));
                        for (&(i, slot), info) in todo.iter().zip(done) {
                            debug_assert_eq!(info.slot, slot);
                            out[i] = Some(NewOutcome {
                                before: None,
                                result: Ok(info),
                            });
                        }
                    }
                    // Nothing of the unflipped ports is visible: bind them one by one.
                    Err(BatchFailed { flipped, error }) => {
                        log::warn!(
                            "batched bind of {} port(s) failed after {flipped}: {}; binding the rest one by one",
                            todo.len(),
                            one_line(&error)
                        );
                        for (k, &(i, _)) in todo.iter().enumerate() {
                            if k < flipped {
                                out[i] = Some(NewOutcome {
                                    before: None,
                                    result: self
                                        .port(ports[i].ifindex)
                                        .map_err(|e| one_line(&e))
                                        .and_then(|p| {
                                            p.ok_or_else(|| {
                                                "record vanished after the batched bind".to_string()
                                            })
                                        }),
                                });
                            } else {
                                one_by_one.push(i);
                            }
                        }
                    }
                }
            }
        }
        for i in one_by_one {
            let np = &ports[i];
            let before = self.port(np.ifindex).ok().flatten();
            let result = self
                .bind(np.ifindex, np.ifname, np.binding)
                .and_then(|_| {
                    self.port(np.ifindex)?
                        .ok_or_else(|| anyhow!("no record after binding"))
                })
                .map_err(|e| one_line(&e));
            out[i] = Some(NewOutcome { before, result });
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every port has an outcome"))
            .collect())
    }

    /// The writes of [`Pinned::bind_new`] for `todo` (index in `ports`,
    /// slot): everything invisible first, then the `PORTS` flips, then the
    /// `PORT_INDEX` claims. `recorded`: every ifindex with a `PORTS` entry
    /// once this is done. Caller holds the change lock.
    fn write_new(
        &mut self,
        ports: &[NewPort],
        todo: &[(usize, u32)],
        recorded: &HashSet<u32>,
    ) -> Result<Vec<PortInfo>, BatchFailed> {
        let early = |error| BatchFailed { flipped: 0, error };
        // Leftovers of an interrupted bind under the generation we write.
        for &(i, _) in todo {
            self.delete_gen(ports[i].ifindex, FIRST_GENERATION)
                .map_err(early)?;
        }
        // Fresh counters and buckets for each slot.
        let slots: Vec<u32> = todo.iter().map(|&(_, s)| s).collect();
        self.reset_stats(&slots).map_err(early)?;
        batch::update(
            self.rate.map(),
            &slots,
            &vec![RateState::default(); slots.len()],
        )
        .context("resetting RATE slots")
        .map_err(early)?;

        // Addresses: index entries first (an interrupted writer leaves nothing
        // the index does not list), then exact addresses, then prefixes.
        let mut idx_keys = Vec::new();
        let mut idx_vals = Vec::new();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        let mut cfgs = Vec::with_capacity(todo.len());
        for &(i, slot) in todo {
            let np = &ports[i];
            let mut cfg = np.binding.port_config(np.ifindex, np.ifname);
            cfg.generation = FIRST_GENERATION;
            cfg.slot = slot;
            for (k, net) in np.binding.ips.iter().enumerate() {
                idx_keys.push(IndexKey {
                    ifindex: np.ifindex,
                    generation: FIRST_GENERATION,
                    idx: k as u32,
                });
                idx_vals.push(net_index(net));
            }
            let (h4, h6) = host_keys(np.ifindex, FIRST_GENERATION, &np.binding.ips);
            if cfg.flags & filter_common::flags::HAS_V4_TABLE != 0 {
                v4.extend(h4);
            }
            if cfg.flags & filter_common::flags::HAS_V6_TABLE != 0 {
                v6.extend(h6);
            }
            cfgs.push(cfg);
        }
        batch::update(self.addr_index.map(), &idx_keys, &idx_vals)
            .context("writing ADDR_INDEX")
            .map_err(early)?;
        batch::update(self.v4.map(), &v4, &vec![1u8; v4.len()])
            .context("writing V4_ADDRS (map full?)")
            .map_err(early)?;
        batch::update(self.v6.map(), &v6, &vec![1u8; v6.len()])
            .context("writing V6_ADDRS (map full?)")
            .map_err(early)?;
        for &(i, _) in todo {
            let np = &ports[i];
            for net in np.binding.ips.iter().filter(|n| !n.is_host()) {
                self.insert_prefix(np.ifindex, FIRST_GENERATION, net)
                    .map_err(early)?;
            }
        }
        // Records, into the first half of each slot (no record: nothing reads it).
        let cfg_keys: Vec<u32> = slots.iter().map(|s| s * 2).collect();
        batch::update(self.configs.map(), &cfg_keys, &cfgs)
            .context("writing CONFIGS")
            .map_err(early)?;

        // The flips: each port becomes visible with its `PORTS` entry.
        let refs: Vec<PortRef> = todo
            .iter()
            .map(|&(i, slot)| PortRef {
                ifindex: ports[i].ifindex,
                cfg: slot * 2,
            })
            .collect();
        let keys: Vec<u32> = refs.iter().map(|r| r.ifindex).collect();
        if let Err(e) = batch::update(self.ports.map(), &keys, &refs) {
            let flipped = match &e {
                batch::BatchError::Syscall { done, .. } => *done,
            };
            return Err(BatchFailed {
                flipped,
                error: anyhow::Error::from(e).context("updating PORTS"),
            });
        }
        let flipped = refs.len();
        self.claim_index_entries(&refs, recorded)
            .map_err(|error| BatchFailed { flipped, error })?;

        Ok(todo
            .iter()
            .zip(&cfgs)
            .map(|(&(i, _), cfg)| PortInfo {
                ifindex: cfg.ifindex,
                ifname: str_from_fixed(&cfg.ifname),
                tenant: str_from_fixed(&cfg.tenant),
                binding: Some(ports[i].binding.clone()),
                attach_mode: 0,
                attach_reason: 0,
                slot: cfg.slot,
                generation: cfg.generation,
                guarded: false,
            })
            .collect())
    }

    /// `PORT_INDEX` entries for new records `refs` (already in `PORTS`): an
    /// entry is claimed when free or left by a port without a record (as
    /// `put` decides; the first of two new ports sharing an entry gets it,
    /// the other is found through `PORTS`). An entry of another ifindex is
    /// zeroed first, so no reader pairs our ifindex with its record.
    fn claim_index_entries(&mut self, refs: &[PortRef], recorded: &HashSet<u32>) -> Result<()> {
        // Each entry as it will be once the claims are written.
        let mut entry: HashMap<u32, PortRef> = HashMap::new();
        let (mut zero, mut claims) = (Vec::new(), Vec::new());
        for r in refs {
            let i = index_slot(r.ifindex);
            let e = match entry.get(&i) {
                Some(e) => *e,
                None => self.index_entry(r.ifindex)?,
            };
            if e.ifindex == 0 || e.ifindex == r.ifindex || !recorded.contains(&e.ifindex) {
                if e.ifindex != 0 && e.ifindex != r.ifindex {
                    zero.push(i);
                }
                claims.push((i, *r));
                entry.insert(i, *r);
            } else {
                entry.insert(i, e);
            }
        }
        batch::update(
            self.port_index.map(),
            &zero,
            &vec![PortRef::default(); zero.len()],
        )
        .context("clearing PORT_INDEX entries")?;
        let (keys, vals): (Vec<u32>, Vec<PortRef>) = claims.into_iter().unzip();
        batch::update(self.port_index.map(), &keys, &vals).context("updating PORT_INDEX")?;
        Ok(())
    }
}

/// The batch stopped: the first `flipped` ports are bound (visible and
/// complete), the others are not visible.
struct BatchFailed {
    flipped: usize,
    error: anyhow::Error,
}

fn failed(e: anyhow::Error) -> NewOutcome {
    NewOutcome {
        before: None,
        result: Err(one_line(&e)),
    }
}

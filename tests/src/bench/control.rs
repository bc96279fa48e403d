//! Control plane: what installing N addresses costs, and where the time goes.
//! `Pinned::bind` timings come from Tier A2 (one fresh instance per size);
//! this module adds a breakdown on scratch maps (per-element inserts through
//! aya, a full key walk, the library's BPF_MAP_UPDATE_BATCH path, a rebind),
//! plus `nft -f` of the same set for the sizes Tier B does not load anyway.
use std::time::Instant;

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap, Map, MapData};
use filter_common::V6Key;
use serde_json::{json, Value};

use super::{
    nft,
    progs::{self, Family},
    stats::round,
    sys::{self, Netns, PinDir},
    Opts,
};

/// V6_ADDRS of a fresh instance under `dir`.
fn v6_map(dir: &PinDir) -> Result<HashMap<MapData, V6Key, u8>> {
    portguard::pinned::Pinned::open(&dir.path)?;
    let data = MapData::from_pin(dir.maps().join("V6_ADDRS")).context("opening V6_ADDRS")?;
    Ok(HashMap::try_from(Map::HashMap(data))?)
}

fn keys(n: u32) -> Vec<V6Key> {
    (0..n)
        .map(|i| {
            let std::net::IpAddr::V6(a) = Family::V6.bound(i) else {
                unreachable!()
            };
            V6Key {
                ifindex: 1,
                generation: 1,
                addr: a.octets(),
            }
        })
        .collect()
}

/// Breakdown of installing `n` IPv6 addresses, on scratch pin directories.
pub fn breakdown(o: &Opts, n: u32) -> Result<Value> {
    let ks = keys(n);
    // 1. One BPF_MAP_UPDATE_ELEM per address.
    let d1 = PinDir::new("c1")?;
    let mut m = v6_map(&d1)?;
    let t = Instant::now();
    for k in &ks {
        m.insert(k, 1, 0)?;
    }
    let insert_s = t.elapsed().as_secs_f64();
    // 2. Walking every key (what a rebind would cost without ADDR_INDEX).
    let t = Instant::now();
    let walked = m.keys().filter_map(|k| k.ok()).count();
    let iterate_s = t.elapsed().as_secs_f64();
    if walked != n as usize {
        bail!("walked {walked} keys of {n}");
    }
    drop(m);
    drop(d1);
    // 3. The same inserts batched: BPF_MAP_UPDATE_BATCH, 16384 per call.
    let d2 = PinDir::new("c2")?;
    let m = v6_map(&d2)?;
    let t = Instant::now();
    // The library's batch path (what Pinned::bind uses), 16384 per call.
    portguard::batch::update(aya::maps::IterableMap::map(&m), &ks, &vec![1u8; ks.len()])?;
    let batch_s = t.elapsed().as_secs_f64();
    let count = m.keys().filter_map(|k| k.ok()).count();
    if count != n as usize {
        bail!("batch update left {count} keys of {n}");
    }
    drop(m);
    drop(d2);
    // 4. A rebind of the same n addresses through the library (full runs only):
    //    reads the previous binding back, writes a new generation, deletes the old.
    let rebind_s = if o.quick {
        None
    } else {
        let d3 = PinDir::new("c3")?;
        let mut p = portguard::pinned::Pinned::open(&d3.path)?;
        let b = progs::binding((0..n).map(|i| progs::net(Family::V6.bound(i))).collect())?;
        p.bind(1, "lo", &b)?;
        let t = Instant::now();
        p.bind(1, "lo", &b)?;
        Some(t.elapsed().as_secs_f64())
    };
    Ok(json!({
        "addresses": n,
        "family": "v6",
        "per_element_update_seconds": round(insert_s, 4),
        "key_walk_seconds": round(iterate_s, 4),
        "update_batch_seconds": round(batch_s, 4),
        "update_batch_chunk": 16384,
        "rebind_same_size_seconds": rebind_s.map(|s| round(s, 4)),
    }))
}

/// `nft -f` of a netdev set of `n` IPv6 triples, on a veth of its own netns.
pub fn nft_install(sizes: &[u32]) -> Result<Vec<(u32, f64)>> {
    let ns = Netns::new("c")?;
    sys::ip(
        &ns.name,
        &[
            "link", "add", "pgb0", "type", "veth", "peer", "name", "pgb1",
        ],
    )?;
    sys::ip(&ns.name, &["link", "set", "pgb0", "up"])?;
    let mut out = Vec::new();
    for &n in sizes {
        let addrs: Vec<_> = (0..n).map(|i| Family::V6.bound(i)).collect();
        let s = nft::load(
            &ns.name,
            "ctl",
            &nft::netdev_ruleset("pgb0", Family::V6, &addrs),
        )?;
        nft::delete(&ns.name, "netdev", nft::NETDEV_TABLE);
        out.push((n, s));
    }
    Ok(out)
}

//! The etcd key layout of the fleet contract (docs/fleet.md).
//!
//! ```text
//! /portguard/v1/hosts/<host>/ports/<id>    binding (orchestrator writes, agent reads)
//! /portguard/v1/status/<host>/agent        agent liveness (on a lease)
//! /portguard/v1/status/<host>/ports/<id>   per-port status (agent writes)
//! ```
//! Every prefix ends with `/`: `hosts/hv1/` must not match `hosts/hv10/`.

/// Root of every key; the `v1` is the contract version.
pub const ROOT: &str = "/portguard/v1/";

/// Why a host name or port id cannot be used in a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {name:?}: {why}")]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
    pub why: &'static str,
}

/// Host names and port ids are one key segment: 1-128 of `[A-Za-z0-9._:-]`,
/// not `.` or `..` (so they can never add or climb a level).
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let err = |why| {
        Err(NameError {
            what,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return err("empty");
    }
    if name.len() > 128 {
        return err("longer than 128 bytes");
    }
    if name == "." || name == ".." {
        return err("not a name");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return err("only letters, digits and . _ : - are allowed");
    }
    Ok(())
}

/// `/portguard/v1/hosts/<host>/`: what the host's role may read.
pub fn host_prefix(host: &str) -> String {
    format!("{ROOT}hosts/{host}/")
}

/// `/portguard/v1/hosts/<host>/ports/`: the agent lists and watches this.
pub fn ports_prefix(host: &str) -> String {
    format!("{ROOT}hosts/{host}/ports/")
}

pub fn port_key(host: &str, id: &str) -> String {
    format!("{}{id}", ports_prefix(host))
}

/// `/portguard/v1/status/<host>/`: what the host's role may write.
pub fn status_prefix(host: &str) -> String {
    format!("{ROOT}status/{host}/")
}

/// `/portguard/v1/status/`: every host's status (operators read this).
pub fn all_status_prefix() -> String {
    format!("{ROOT}status/")
}

/// `/portguard/v1/hosts/`: every host's bindings.
pub fn all_hosts_prefix() -> String {
    format!("{ROOT}hosts/")
}

pub fn agent_status_key(host: &str) -> String {
    format!("{}agent", status_prefix(host))
}

pub fn port_status_prefix(host: &str) -> String {
    format!("{}ports/", status_prefix(host))
}

pub fn port_status_key(host: &str, id: &str) -> String {
    format!("{}{id}", port_status_prefix(host))
}

/// The port id of a key under `prefix` (None: another level or not ours).
pub fn id_under<'a>(prefix: &str, key: &'a [u8]) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    let id = std::str::from_utf8(rest).ok()?;
    check_name("port id", id).ok()?;
    Some(id)
}

/// A status key split into (host, None) for `agent` or (host, Some(id)) for a port.
pub fn parse_status_key(key: &[u8]) -> Option<(&str, Option<&str>)> {
    let rest = key.strip_prefix(all_status_prefix().as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (host, what) = rest.split_once('/')?;
    if what == "agent" {
        return Some((host, None));
    }
    let id = what.strip_prefix("ports/")?;
    (!id.is_empty() && !id.contains('/')).then_some((host, Some(id)))
}

/// A binding key split into (host, id).
pub fn parse_port_key(key: &[u8]) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(all_hosts_prefix().as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (host, id) = rest.split_once("/ports/")?;
    (!host.contains('/') && !id.is_empty() && !id.contains('/')).then_some((host, id))
}

/// etcd's range end for a prefix: the prefix with its last byte incremented.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefixes_end_with_a_slash() {
        // hv1's prefix must not cover hv10's keys.
        let k10 = port_key("hv10", "p1");
        assert!(!k10.starts_with(&host_prefix("hv1")));
        assert!(!k10.starts_with(&ports_prefix("hv1")));
        assert!(port_key("hv1", "p1").starts_with(&ports_prefix("hv1")));
        assert!(agent_status_key("hv1").starts_with(&status_prefix("hv1")));
        assert!(!agent_status_key("hv10").starts_with(&status_prefix("hv1")));
    }

    #[test]
    fn names_are_one_segment() {
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(check_name("host", bad).is_err(), "{bad:?}");
        }
        for good in ["hv1", "rack-3.hv_10", "port:0a1b", &"x".repeat(128)] {
            assert!(check_name("host", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn keys_parse_back() {
        let k = port_key("hv1", "p-1");
        assert_eq!(parse_port_key(k.as_bytes()), Some(("hv1", "p-1")));
        assert_eq!(id_under(&ports_prefix("hv1"), k.as_bytes()), Some("p-1"));
        assert_eq!(
            id_under(&ports_prefix("hv1"), b"/portguard/v1/hosts/hv1/ports/a/b"),
            None
        );
        assert_eq!(
            parse_status_key(agent_status_key("hv2").as_bytes()),
            Some(("hv2", None))
        );
        assert_eq!(
            parse_status_key(port_status_key("hv2", "p9").as_bytes()),
            Some(("hv2", Some("p9")))
        );
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
    }
}

//! Link events from rtnetlink, in the caller's network namespace.
//!
//! [`LinkEvents::subscribe`] joins the `RTNLGRP_LINK` multicast group; after
//! that, [`dump`] (RTM_GETLINK) gives every link, so nothing created between
//! the two is missed (it is in the dump, and maybe an event too: handlers are
//! idempotent). When the socket's receive queue overflows the kernel drops
//! events and reports ENOBUFS: [`LinkEvents::next`] then says
//! [`Received::Overrun`], and the caller resyncs from a fresh [`dump`].
//! Messages are built and parsed with netlink-packet-route.
use std::{io, os::fd::AsRawFd, time::Duration};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkLayerType, LinkMessage},
    RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use thiserror::Error;

/// One network interface as rtnetlink describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// ARPHRD_ETHER (tap, veth, ...): the only kind portguard guards.
    pub ethernet: bool,
    /// IFF_UP.
    pub up: bool,
}

/// A link appeared or changed (RTM_NEWLINK: created, renamed, brought up
/// or down, ...) or is gone (RTM_DELLINK: deleted or moved to another
/// network namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    New(Link),
    Del(Link),
}

impl LinkEvent {
    pub fn link(&self) -> &Link {
        match self {
            LinkEvent::New(l) | LinkEvent::Del(l) => l,
        }
    }
}

/// What one [`LinkEvents::next`] call got.
#[derive(Debug)]
pub enum Received {
    /// Events in kernel order (possibly none: e.g. other messages).
    Events(Vec<LinkEvent>),
    /// Events were lost (ENOBUFS): resync from a [`dump`].
    Overrun,
    /// Nothing arrived within the timeout.
    Timeout,
}

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("subscribing to link events (RTNLGRP_LINK): {0}")]
    Subscribe(#[source] io::Error),
    #[error("receiving link events: {0}")]
    Recv(#[source] io::Error),
    #[error("link dump (RTM_GETLINK): {0}")]
    Dump(String),
}

/// Receive buffer asked for: a burst of a few thousand link events fits
/// before the kernel has to drop any (each is ~1-2 KiB).
const RCVBUF: usize = 8 << 20;
/// Larger than any single netlink datagram the kernel sends us.
const DATAGRAM: usize = 64 << 10;

/// A socket subscribed to link events.
pub struct LinkEvents {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    /// Opens the socket and joins RTNLGRP_LINK. Call [`dump`] after this, not before.
    pub fn subscribe() -> Result<LinkEvents, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        // Root can go past net.core.rmem_max (SO_RCVBUFFORCE); else the plain option.
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, RCVBUF).is_err() {
            let _ = sock.set_rx_buf_sz(RCVBUF as libc::c_int);
        }
        sock.add_membership(libc::RTNLGRP_LINK)
            .map_err(NetlinkError::Subscribe)?;
        Ok(LinkEvents {
            sock,
            buf: vec![0; DATAGRAM],
        })
    }

    /// Waits up to `timeout` for the next datagram and parses it.
    pub fn next(&mut self, timeout: Duration) -> Result<Received, NetlinkError> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => return Ok(Received::Timeout),
            Ok(_) => {}
            Err(e) => return Err(NetlinkError::Recv(e.into())),
        }
        let n = match self.sock.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
            Ok(n) => n.min(self.buf.len()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Received::Overrun),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::Timeout),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Received::Timeout),
            Err(e) => return Err(NetlinkError::Recv(e)),
        };
        let mut events = Vec::new();
        let mut lost = false;
        for_each_message(&self.buf[..n], |m| match m {
            Parsed::New(l) => events.push(LinkEvent::New(l)),
            Parsed::Del(l) => events.push(LinkEvent::Del(l)),
            // A message we cannot read may be a link we would miss: resync.
            Parsed::Overrun | Parsed::Unreadable => lost = true,
            Parsed::Done | Parsed::Error | Parsed::Other => {}
        });
        if lost {
            return Ok(Received::Overrun);
        }
        Ok(Received::Events(events))
    }
}

/// Receives until `stop` is set (checked at least every 200 ms) or `send`
/// returns false, handing `send` everything but timeouts. Meant for a
/// thread of its own feeding a channel; after an error it pauses a second.
pub fn forward(
    mut events: LinkEvents,
    stop: &std::sync::atomic::AtomicBool,
    mut send: impl FnMut(Result<Received, NetlinkError>) -> bool,
) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let r = events.next(Duration::from_millis(200));
        let failed = r.is_err();
        if matches!(r, Ok(Received::Timeout)) {
            continue;
        }
        if !send(r) {
            return;
        }
        if failed {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}

enum Parsed {
    New(Link),
    Del(Link),
    Done,
    Error,
    Overrun,
    Unreadable,
    Other,
}

fn link_of(m: &LinkMessage) -> Link {
    let name = m
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    Link {
        ifindex: m.header.index,
        name,
        ethernet: m.header.link_layer_type == LinkLayerType::Ether,
        up: m.header.flags.contains(LinkFlags::Up),
    }
}

/// Calls `f` for every netlink message in one datagram.
fn for_each_message(mut data: &[u8], mut f: impl FnMut(Parsed)) {
    while !data.is_empty() {
        let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) {
            Ok(m) => m,
            Err(_) => {
                f(Parsed::Unreadable);
                return;
            }
        };
        // Messages are 4-byte aligned inside a datagram.
        let len = (msg.header.length as usize + 3) & !3;
        f(match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                Parsed::New(link_of(&m))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                Parsed::Del(link_of(&m))
            }
            NetlinkPayload::Done(_) => Parsed::Done,
            NetlinkPayload::Error(_) => Parsed::Error,
            NetlinkPayload::Overrun(_) => Parsed::Overrun,
            _ => Parsed::Other,
        });
        if len == 0 || len >= data.len() {
            return;
        }
        data = &data[len..];
    }
}

/// Every link of the current network namespace (RTM_GETLINK dump).
pub fn dump() -> Result<Vec<Link>, NetlinkError> {
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
    sock.bind_auto().map_err(NetlinkError::Socket)?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(NetlinkError::Socket)?;
    // Without counters: a dump of thousands of links is then about half
    // the bytes to build and parse (only names, indexes and types are used).
    let mut get = LinkMessage::default();
    get.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let mut req = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(get)),
    );
    req.header.flags = NLM_F_DUMP | NLM_F_REQUEST;
    req.header.sequence_number = 1;
    req.finalize();
    let mut out = vec![0; req.buffer_len()];
    req.serialize(&mut out[..]);
    sock.send(&out, 0)
        .map_err(|e| NetlinkError::Dump(format!("sending the request: {e}")))?;
    let mut buf = vec![0u8; DATAGRAM];
    let mut links = Vec::new();
    loop {
        let n = sock
            .recv(&mut &mut buf[..], 0)
            .map_err(|e| NetlinkError::Dump(format!("receiving: {e}")))?;
        // An interrupted dump (links changed meanwhile) is still complete
        // for what it lists; the events that changed it follow.
        if dump_datagram(&buf[..n.min(buf.len())], &mut links).map_err(NetlinkError::Dump)? {
            return Ok(links);
        }
    }
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const ARPHRD_ETHER: u16 = 1;
/// sizeof(struct nlmsghdr), sizeof(struct ifinfomsg).
const NLMSG_HDR: usize = 16;
const IFINFO: usize = 16;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The links of one datagram of a link dump, read by hand: only the header
/// (ifindex, type, flags) and the name are used, and decoding every
/// attribute of every link with the generic parser was most of the time of
/// a dump of thousands of links. True once the dump is done.
fn dump_datagram(mut data: &[u8], links: &mut Vec<Link>) -> Result<bool, String> {
    while data.len() >= NLMSG_HDR {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDR || len > data.len() {
            return Err(format!("truncated message ({len} of {} bytes)", data.len()));
        }
        let msg = &data[..len];
        match u16_at(msg, 4) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR if len >= NLMSG_HDR + 4 => {
                let code = u32_at(msg, NLMSG_HDR) as i32;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code).to_string());
                }
            }
            RTM_NEWLINK if len >= NLMSG_HDR + IFINFO => {
                let info = &msg[NLMSG_HDR..];
                let mut name = String::new();
                let mut attrs = &info[IFINFO..];
                while attrs.len() >= 4 {
                    let alen = u16_at(attrs, 0) as usize;
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    if u16_at(attrs, 2) & 0x3fff == IFLA_IFNAME {
                        let v = &attrs[4..alen];
                        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                        name = String::from_utf8_lossy(&v[..end]).into_owned();
                        break;
                    }
                    attrs = &attrs[((alen + 3) & !3).min(attrs.len())..];
                }
                links.push(Link {
                    ifindex: u32_at(info, 4),
                    name,
                    ethernet: u16_at(info, 2) == ARPHRD_ETHER,
                    up: u32_at(info, 8) & libc::IFF_UP as u32 != 0,
                });
            }
            _ => {}
        }
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lists_loopback() {
        // Every network namespace has `lo`; no privileges needed to dump.
        let links = dump().expect("dump");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo listed");
        assert_eq!(lo.ifindex, crate::iface::index("lo").unwrap());
        assert!(!lo.ethernet);
    }

    #[test]
    fn parses_a_serialized_newlink() {
        let mut m = LinkMessage::default();
        m.header.index = 42;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.header.flags = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName("vnet7".into()));
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::NewLink(m)),
        );
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        // Two messages in one datagram, as dumps send them.
        let mut two = buf.clone();
        two.extend_from_slice(&buf);
        let mut got = Vec::new();
        for_each_message(&two, |p| {
            if let Parsed::New(l) = p {
                got.push(l)
            }
        });
        let want = Link {
            ifindex: 42,
            name: "vnet7".into(),
            ethernet: true,
            up: true,
        };
        assert_eq!(got, vec![want.clone(), want.clone()]);

        // The dump's own reader agrees, and stops at the end of the dump.
        let mut links = Vec::new();
        assert!(!dump_datagram(&two, &mut links).unwrap());
        assert_eq!(links, vec![want.clone(), want]);
        let mut done = NetlinkMessage::<RouteNetlinkMessage>::new(
            NetlinkHeader::default(),
            NetlinkPayload::Done(netlink_packet_core::DoneMessage::default()),
        );
        done.finalize();
        let mut end = vec![0; done.buffer_len()];
        done.serialize(&mut end);
        assert!(dump_datagram(&end, &mut links).unwrap());
        assert!(
            dump_datagram(&two[..10], &mut links).is_ok(),
            "a short tail is no message"
        );
        assert!(
            dump_datagram(&two[..30], &mut links).is_err(),
            "a cut message"
        );
    }
}

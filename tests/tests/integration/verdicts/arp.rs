//! Section 5 of docs/policy.md: ARP.
use super::*;

#[test]
fn s5_arp() {
    check(s5_arp_t());
}

pub(super) fn s5_arp_t() -> Vec<Phase> {
    let req = arp_req(M, own4());
    let set = |mut a: Vec<u8>, i: usize, v: &[u8]| {
        a[i..i + v.len()].copy_from_slice(v);
        a
    };
    vec![(
        base(),
        rows! {
            row!("request", earp(&req), Pass),
            row!("request padded", f::pad_to(earp(&req), 60), Pass),
            row!("reply", earp(&f::arp(f::ARP_REPLY, M, own4(), PEER, peer4())), Pass),
            row!("request from prefix", earp(&arp_req(M, f::v4("198.51.100.9"))), Pass),
            row!("probe (spa 0) request", earp(&arp_req(M, Ipv4Addr::UNSPECIFIED)), Pass),
            row!("gratuitous request", earp(&f::arp(f::ARP_REQUEST, M, own4(), f::ZERO_MAC, own4())), Pass),
            row!("gratuitous reply", earp(&f::arp(f::ARP_REPLY, M, own4(), f::BROADCAST, own4())), Pass),
            // malformed
            row!("27 bytes", earp(&req[..27]), Drop(Reason::Malformed)),
            row!("0 bytes", earp(&[]), Drop(Reason::Malformed)),
            row!("htype 6", earp(&set(req.clone(), 0, &[0, 6])), Drop(Reason::Malformed)),
            row!("ptype 0x86dd", earp(&set(req.clone(), 2, &[0x86, 0xdd])), Drop(Reason::Malformed)),
            row!("hlen 8", earp(&set(req.clone(), 4, &[8])), Drop(Reason::Malformed)),
            row!("plen 16", earp(&set(req.clone(), 5, &[16])), Drop(Reason::Malformed)),
            row!("opcode 0", earp(&set(req.clone(), 6, &[0, 0])), Drop(Reason::Malformed)),
            row!("opcode 3 (RARP)", earp(&set(req.clone(), 6, &[0, 3])), Drop(Reason::Malformed)),
            row!("opcode 0x0101", earp(&set(req.clone(), 6, &[1, 1])), Drop(Reason::Malformed)),
            row!("bad opcode and bad sha", earp(&set(arp_req(OTHER, peer4()), 6, &[0, 9])), Drop(Reason::Malformed)),
            // spoof
            row!("sha other", earp(&arp_req(OTHER, own4())), Drop(Reason::ArpSpoof)),
            row!("sha M with group bit", earp(&arp_req([3, 0, 0, 0, 0, 1], own4())), Drop(Reason::ArpSpoof)),
            row!("spa peer", earp(&arp_req(M, peer4())), Drop(Reason::ArpSpoof)),
            row!("spa past prefix", earp(&arp_req(M, f::v4("198.51.100.16"))), Drop(Reason::ArpSpoof)),
            row!("reply with spa 0", earp(&f::arp(f::ARP_REPLY, M, Ipv4Addr::UNSPECIFIED, PEER, peer4())), Drop(Reason::ArpSpoof)),
            row!("reply spa peer", earp(&f::arp(f::ARP_REPLY, M, peer4(), PEER, peer4())), Drop(Reason::ArpSpoof)),
            row!("gratuitous for peer", earp(&f::arp(f::ARP_REQUEST, M, peer4(), f::ZERO_MAC, peer4())), Drop(Reason::ArpSpoof)),
            // tha/tpa are not checked
            row!("tha/tpa anything", earp(&f::arp(f::ARP_REQUEST, M, own4(), OTHER, f::v4("203.0.113.9"))), Pass),
        },
    )]
}

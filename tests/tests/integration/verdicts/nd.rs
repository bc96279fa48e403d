//! Section 6 of docs/policy.md: neighbor discovery.
use super::*;

#[test]
fn s6_neighbor_discovery() {
    check(s6_neighbor_discovery_t());
}

pub(super) fn s6_neighbor_discovery_t() -> Vec<Phase> {
    let ns_own = |opts: &[u8]| e6(&ns(own6(), peer6(), opts));
    let na_own = |target: Ipv6Addr, opts: &[u8]| e6(&na(own6(), target, opts));
    let four: Vec<u8> = [nonce(), nonce(), nonce(), nonce()].concat();
    vec![(
        base(),
        rows! {
            // NS
            row!("NS no options", ns_own(&[]), Pass),
            row!("NS from LL", e6(&ns(ll(), peer6(), &slla(M))), Pass),
            row!("NS SLLA = M", ns_own(&slla(M)), Pass),
            row!("NS SLLA other", ns_own(&slla(OTHER)), Drop(Reason::NdSpoof)),
            row!("NS SLLA length 2 with M", ns_own(&f::nd_opt_raw(1, 2, &M)), Drop(Reason::NdSpoof)),
            row!("NS TLLA other (not checked in NS)", ns_own(&tlla(OTHER)), Pass),
            row!("NS target anything", e6(&ns(own6(), f::v6("2001:db8:9::9"), &[])), Pass),
            row!("NS hop limit 254", e6(&hop(ns(own6(), peer6(), &[]), 254)), Drop(Reason::NdSpoof)),
            row!("NS hop limit 1", e6(&hop(ns(own6(), peer6(), &[]), 1)), Drop(Reason::NdSpoof)),
            row!("NS code 1", e6(&with_code(ns(own6(), peer6(), &[]), 1)), Drop(Reason::NdSpoof)),
            row!("NS 23 bytes", e6(&v6raw(own6(), 58, 255, &ns(own6(), peer6(), &[])[40..63])), Drop(Reason::Malformed)),
            row!("NS 4 bytes", e6(&v6raw(own6(), 58, 255, &[135, 0, 0, 0])), Drop(Reason::Malformed)),
            row!("NS spoofed src, hop 64", e6(&hop(ns(peer6(), peer6(), &[]), 64)), Drop(Reason::Ipv6Spoof)),
            row!("NS padded after payload", f::pad_to(ns_own(&slla(M)), 120), Pass),
            row!("NS garbage in padding after payload", [ns_own(&[]), vec![0, 0, 0, 0]].concat(), Pass),
            // DAD
            row!("DAD no options", e6(&f::nd_dad(own6())), Pass),
            row!("DAD with SLLA = M", e6(&f::nd_ns(UNSPEC6, f::solicited_node(own6()), own6(), Some(M))), Drop(Reason::NdSpoof)),
            row!("DAD with nonce", e6(&ns(UNSPEC6, own6(), &nonce())), Pass),
            row!("DAD hop limit 1", e6(&hop(f::nd_dad(own6()), 1)), Drop(Reason::NdSpoof)),
            // options walk
            row!("option length 0", ns_own(&[14, 0, 0, 0, 0, 0, 0, 0]), Drop(Reason::NdSpoof)),
            row!("option runs past end", ns_own(&f::nd_opt_raw(14, 2, &[])[..8]), Drop(Reason::Malformed)),
            row!("1 byte left for an option", ns_own(&[14]), Drop(Reason::Malformed)),
            row!("option past payload end, present in frame", e6(&plen(ns(own6(), peer6(), &slla(OTHER)), 24 + 4)), Drop(Reason::Malformed)),
            row!("4 options", ns_own(&four), Pass),
            row!("3 nonces + SLLA M", ns_own(&[nonce(), nonce(), nonce(), slla(M)].concat()), Pass),
            row!("3 nonces + SLLA other (4th)", ns_own(&[nonce(), nonce(), nonce(), slla(OTHER)].concat()), Drop(Reason::NdSpoof)),
            row!("5 options", ns_own(&[four.clone(), nonce()].concat()), Drop(Reason::NdSpoof)),
            row!("4 options + SLLA other (5th)", ns_own(&[four.clone(), slla(OTHER)].concat()), Drop(Reason::NdSpoof)),
            row!("4 options + 1 byte", ns_own(&[four.clone(), vec![1]].concat()), Drop(Reason::NdSpoof)),
            // NA
            row!("NA own target, TLLA M", na_own(own6(), &tlla(M)), Pass),
            row!("NA prefix target", na_own(pfx6(), &[]), Pass),
            row!("NA LL target", e6(&na(ll(), ll(), &tlla(M))), Pass),
            row!("NA TLLA other", na_own(own6(), &tlla(OTHER)), Drop(Reason::NdSpoof)),
            row!("NA TLLA length 2", na_own(own6(), &f::nd_opt_raw(2, 2, &M)), Drop(Reason::NdSpoof)),
            row!("NA SLLA other (not checked in NA)", na_own(own6(), &slla(OTHER)), Pass),
            row!("NA target peer", na_own(peer6(), &tlla(M)), Drop(Reason::NdSpoof)),
            row!("NA target other LL", na_own(f::v6("fe80::1"), &[]), Drop(Reason::NdSpoof)),
            row!("NA target ::", na_own(UNSPEC6, &[]), Drop(Reason::NdSpoof)),
            row!("NA hop limit 64", e6(&hop(na(own6(), own6(), &[]), 64)), Drop(Reason::NdSpoof)),
            row!("NA code 3", e6(&with_code(na(own6(), own6(), &[]), 3)), Drop(Reason::NdSpoof)),
            row!("NA 23 bytes", e6(&v6raw(own6(), 58, 255, &na(own6(), own6(), &[])[40..63])), Drop(Reason::Malformed)),
            row!("NA option length 0", na_own(own6(), &[2, 0, 0, 0, 0, 0, 0, 0]), Drop(Reason::NdSpoof)),
            row!("NA 5 options", na_own(own6(), &[four.clone(), tlla(M)].concat()), Drop(Reason::NdSpoof)),
            row!("NA spoofed src", e6(&na(peer6(), own6(), &[])), Drop(Reason::Ipv6Spoof)),
            row!("NA behind hbh", e6(&f::ipv6(own6(), f::ALL_NODES, 0, 255, &[f::hop_by_hop(58, &[]), na(own6(), own6(), &tlla(M))[40..].to_vec()] .concat())), Pass),
            row!("NA behind hbh, TLLA other", e6(&f::ipv6(own6(), f::ALL_NODES, 0, 255, &[f::hop_by_hop(58, &[]), na(own6(), own6(), &tlla(OTHER))[40..].to_vec()] .concat())), Drop(Reason::NdSpoof)),
        },
    )]
}

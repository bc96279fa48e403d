//! Cross-check of every table against the reference model.
use super::*;

/// Cross-check: every fixture's expectation agrees with the reference model
/// (`portguard::model::evaluate`, sections 1-6). A failure here means the
/// fixture or the model misreads docs/policy.md; the eBPF program itself is
/// checked by the tests above. (Storm control and monitor tables are left
/// out: the model's `evaluate` stops before section 7.)
#[test]
fn fixtures_agree_with_reference_model() {
    let tables: Vec<(&str, Vec<Phase>)> = vec![
        ("s2_ethernet_and_mac", l2::s2_ethernet_and_mac_t()),
        (
            "s2_vlan_when_no_vlan_is_allowed",
            l2::s2_vlan_when_no_vlan_is_allowed_t(),
        ),
        (
            "s2_vlan_when_vlans_are_allowed",
            l2::s2_vlan_when_vlans_are_allowed_t(),
        ),
        ("s3_ethertypes", l2::s3_ethertypes_t()),
        (
            "s4_ipv4_header_and_truncation",
            ipv4::s4_ipv4_header_and_truncation_t(),
        ),
        ("s4_ipv4_udp_and_source", ipv4::s4_ipv4_udp_and_source_t()),
        ("s4_dhcp_server", dhcp::s4_dhcp_server_t()),
        ("s5_arp", arp::s5_arp_t()),
        (
            "s6_ipv6_header_and_sources",
            ipv6::s6_ipv6_header_and_sources_t(),
        ),
        ("s6_extension_headers", ipv6::s6_extension_headers_t()),
        ("s6_fragments", fragments::s6_fragments_t()),
        (
            "s6_ra_guard_and_icmpv6_types",
            ipv6::s6_ra_guard_and_icmpv6_types_t(),
        ),
        ("s6_neighbor_discovery", nd::s6_neighbor_discovery_t()),
        ("s6_dhcpv6", dhcp::s6_dhcpv6_t()),
        ("s6_fragments_and_nd", fragments::s6_fragments_and_nd_t()),
        (
            "s4_ipv4_tcp_fragments",
            fragments::s4_ipv4_tcp_fragments_t(),
        ),
        ("s4_dhcp_client", dhcp::s4_dhcp_client_t()),
    ];
    let mut problems = Vec::new();
    let mut n = 0;
    for (name, phases) in tables {
        for (b, table) in phases {
            for t in table {
                n += 1;
                let d = model::evaluate(Some(&b), &t.frame);
                let got = if d.reason == Reason::Pass {
                    Pass
                } else {
                    Drop(d.reason)
                };
                if got != t.want {
                    problems.push(format!(
                        "{name} [{}]: fixture says {:?}, model says {:?} | frame {}",
                        t.name,
                        t.want,
                        got,
                        hex(&t.frame)
                    ));
                }
            }
        }
    }
    assert!(n > 250, "only {n} fixtures");
    report(problems);
}

/// Why a frame was dropped. The discriminant indexes `PortStats::dropped`.
/// Names (`Reason::name`) are the public contract of `stats --json` and metrics.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not a drop: the frame passes.
    Pass = 0,
    UnboundPort = 1,
    MacSpoof = 2,
    Vlan = 3,
    Ipv4Spoof = 4,
    ArpSpoof = 5,
    Ethertype = 6,
    Malformed = 7,
    Ipv6Spoof = 8,
    NdSpoof = 9,
    RaGuard = 10,
    DhcpServer = 11,
    BcastLimit = 12,
    McastLimit = 13,
    ArpLimit = 14,
    /// A DHCPv4 client message naming another hardware address (`chaddr`,
    /// client identifier of type 1).
    DhcpSpoof = 15,
}

/// Size of the per-reason counter arrays (index 0 is `Pass`, unused).
pub const N_REASONS: usize = 16;

impl Reason {
    /// Every drop reason, in discriminant order (without `Pass`).
    pub const DROPS: [Reason; 15] = [
        Reason::UnboundPort,
        Reason::MacSpoof,
        Reason::Vlan,
        Reason::Ipv4Spoof,
        Reason::ArpSpoof,
        Reason::Ethertype,
        Reason::Malformed,
        Reason::Ipv6Spoof,
        Reason::NdSpoof,
        Reason::RaGuard,
        Reason::DhcpServer,
        Reason::BcastLimit,
        Reason::McastLimit,
        Reason::ArpLimit,
        Reason::DhcpSpoof,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::UnboundPort => "unbound_port",
            Reason::MacSpoof => "mac_spoof",
            Reason::Vlan => "vlan",
            Reason::Ipv4Spoof => "ipv4_spoof",
            Reason::ArpSpoof => "arp_spoof",
            Reason::Ethertype => "ethertype",
            Reason::Malformed => "malformed",
            Reason::Ipv6Spoof => "ipv6_spoof",
            Reason::NdSpoof => "nd_spoof",
            Reason::RaGuard => "ra_guard",
            Reason::DhcpServer => "dhcp_server",
            Reason::BcastLimit => "bcast_limit",
            Reason::McastLimit => "mcast_limit",
            Reason::ArpLimit => "arp_limit",
            Reason::DhcpSpoof => "dhcp_spoof",
        }
    }

    pub const fn from_u8(v: u8) -> Option<Reason> {
        Some(match v {
            0 => Reason::Pass,
            1 => Reason::UnboundPort,
            2 => Reason::MacSpoof,
            3 => Reason::Vlan,
            4 => Reason::Ipv4Spoof,
            5 => Reason::ArpSpoof,
            6 => Reason::Ethertype,
            7 => Reason::Malformed,
            8 => Reason::Ipv6Spoof,
            9 => Reason::NdSpoof,
            10 => Reason::RaGuard,
            11 => Reason::DhcpServer,
            12 => Reason::BcastLimit,
            13 => Reason::McastLimit,
            14 => Reason::ArpLimit,
            15 => Reason::DhcpSpoof,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<Reason> {
        let mut i = 0;
        while i < N_REASONS {
            if let Some(r) = Reason::from_u8(i as u8) {
                if r.name() == name {
                    return Some(r);
                }
            }
            i += 1;
        }
        None
    }
}

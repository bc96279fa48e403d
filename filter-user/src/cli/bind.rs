use anyhow::{Context, Result};
use portguard::{
    audit::{audited, AuditEntry, AuditLog},
    binding::{Binding, Mode},
    iface,
    parse::{parse_ethertype, parse_vlan, IpNet, Mac},
    pinned::Pinned,
    report::port_json,
    spec::PortSpec,
};

#[derive(clap::Args)]
pub struct Args {
    /// Host-side interface of the VM (tap or veth).
    pub iface: String,
    /// The only source MAC the VM may use.
    #[arg(long)]
    pub mac: String,
    /// Allowed source address or prefix (IPv4/IPv6), repeatable.
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// Tenant label carried into show/stats/metrics.
    #[arg(long, default_value = "")]
    pub tenant: String,
    /// What happens to a frame that breaks the binding.
    #[arg(long, value_enum, default_value = "enforce")]
    pub mode: Mode,
    /// Broadcast frames per second (0 = unlimited).
    #[arg(long)]
    pub broadcast_pps: Option<u32>,
    /// Broadcast burst (default: twice the rate when a rate is given).
    #[arg(long)]
    pub broadcast_burst: Option<u32>,
    /// Multicast frames per second (0 = unlimited).
    #[arg(long)]
    pub multicast_pps: Option<u32>,
    /// Multicast burst (default: twice the rate when a rate is given).
    #[arg(long)]
    pub multicast_burst: Option<u32>,
    /// ARP requests per second (0 = unlimited).
    #[arg(long)]
    pub arp_pps: Option<u32>,
    /// ARP burst (default: twice the rate when a rate is given).
    #[arg(long)]
    pub arp_burst: Option<u32>,
    /// Trust this VM as DHCP infrastructure (server or relay agent): it may send to UDP 68/546
    /// and DHCPv6 server/relay types, and its DHCP client messages are not inspected.
    #[arg(long)]
    pub allow_dhcp_server: bool,
    /// Admit another EtherType, e.g. 0x88cc (repeatable).
    #[arg(long = "allow-ethertype")]
    pub ethertypes: Vec<String>,
    /// Admit 802.1Q frames with this VLAN ID; the inner frame is checked as usual (repeatable).
    #[arg(long = "allow-vlan")]
    pub vlans: Vec<String>,
}

impl Args {
    /// The port the flags describe (each value checked, the whole not yet).
    pub fn spec(&self) -> Result<PortSpec> {
        Ok(PortSpec {
            iface: self.iface.clone(),
            mac: Mac::parse_unicast(&self.mac)?,
            ips: self
                .ips
                .iter()
                .map(|s| s.parse::<IpNet>())
                .collect::<Result<_, _>>()?,
            tenant: self.tenant.clone(),
            mode: self.mode,
            attach: None,
            broadcast_pps: self.broadcast_pps,
            broadcast_burst: self.broadcast_burst,
            multicast_pps: self.multicast_pps,
            multicast_burst: self.multicast_burst,
            arp_pps: self.arp_pps,
            arp_burst: self.arp_burst,
            allow_dhcp_server: self.allow_dhcp_server,
            allow_ethertype: self
                .ethertypes
                .iter()
                .map(|s| parse_ethertype(s))
                .collect::<Result<_, _>>()?,
            allow_vlan: self
                .vlans
                .iter()
                .map(|s| parse_vlan(s))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Everything the flags say, validated, without touching the kernel.
    pub fn binding(&self) -> Result<Binding> {
        Ok(Binding::try_from(&self.spec()?)?)
    }
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    let log = AuditLog::new(&ctx.audit_log);
    // Every attempt is audited, including one rejected for bad input (logged
    // as failed with before/after null): see docs/observability.md.
    let msg = audited(&log, AuditEntry::new("bind", Some(&a.iface)), |e| {
        let b = a.binding()?;
        super::require_root()?;
        let ifindex = iface::ethernet_port(&a.iface)?;
        let mut p = Pinned::open_sized(pin_dir, ctx.max_ports)?;
        e.before = port_json(&p, ifindex);
        let r = p
            .bind(ifindex, &a.iface, &b)
            .with_context(|| format!("binding {}", a.iface));
        e.after = port_json(&p, ifindex);
        let prev = r?;
        let ips: Vec<String> = b.ips.iter().map(|n| n.to_string()).collect();
        let verb = match prev {
            Some(ref old) if *old == b => "unchanged",
            Some(_) => "rebound",
            None => "bound",
        };
        Ok(format!(
            "{}: {verb} mac {} ips [{}]{}{}",
            a.iface,
            b.mac,
            ips.join(", "),
            if b.tenant.is_empty() {
                String::new()
            } else {
                format!(" tenant {}", b.tenant)
            },
            if b.mode == Mode::Monitor {
                " (monitor mode)"
            } else {
                ""
            }
        ))
    })?;
    println!("{msg}");
    Ok(())
}

use anyhow::{bail, Result};
use portguard::{pinned::Pinned, report};

#[derive(clap::Args)]
pub struct Args {
    /// Only this interface (default: every bound or attached port).
    pub iface: Option<String>,
    /// One JSON array of port objects (see the README for the keys).
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    super::require_root()?;
    let ports = if pin_dir.join("maps").exists() {
        let p = Pinned::open(pin_dir)?;
        p.ports()?
    } else {
        Vec::new()
    };
    let ports: Vec<_> = ports
        .into_iter()
        .filter(|i| a.iface.as_deref().is_none_or(|f| f == i.ifname))
        .collect();
    if let Some(f) = &a.iface {
        if ports.is_empty() {
            bail!("{f} is neither bound nor attached");
        }
    }
    if a.json {
        let v: Vec<_> = ports.iter().map(report::show_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|i| {
            let (mac, ips, limits, extra) = match &i.binding {
                Some(b) => (
                    b.mac.to_string(),
                    b.ips
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    format!(
                        "b{}/{} m{}/{} a{}/{}",
                        b.broadcast.pps,
                        b.broadcast.burst,
                        b.multicast.pps,
                        b.multicast.burst,
                        b.arp.pps,
                        b.arp.burst
                    ),
                    {
                        let mut x = Vec::new();
                        if b.allow_dhcp_server {
                            x.push("dhcp-server".to_string());
                        }
                        for e in &b.ethertypes {
                            x.push(format!("et=0x{e:04x}"));
                        }
                        for v in &b.vlans {
                            x.push(format!("vlan={v}"));
                        }
                        x.join(",")
                    },
                ),
                None => ("-".into(), "-".into(), "-".into(), String::new()),
            };
            vec![
                i.ifname.clone(),
                i.ifindex.to_string(),
                if i.tenant.is_empty() {
                    "-".into()
                } else {
                    i.tenant.clone()
                },
                mac,
                ips,
                report::status_name(i).to_string(),
                report::live_attach_mode(i).unwrap_or("no").to_string(),
                limits,
                extra,
            ]
        })
        .collect();
    print!(
        "{}",
        report::table(
            &[
                "IFACE",
                "IFINDEX",
                "TENANT",
                "MAC",
                "IPS",
                "MODE",
                "ATTACHED",
                "LIMITS(pps/burst)",
                "ALLOW"
            ],
            &rows
        )
    );
    Ok(())
}

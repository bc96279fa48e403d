//! portguard's data path: checks every frame a VM sends against its port's
//! binding and drops what is spoofed or abusive, counting per port and reason.
//! The same checks run as an XDP program (`portguard`, native or generic
//! mode) or as a tc ingress program (`portguard_skb`, in `skb.rs`), by
//! attach mode.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "core_intrinsics: atomic_cxchg is the BPF target's only compare-and-exchange (limits.rs)"
)]

mod account;
mod addrs;
mod arp;
mod bytes;
mod dhcp;
mod frag;
mod ipv4;
mod ipv6;
mod limits;
mod maps;
mod noop;
mod pkt;
mod policy;
mod port;
mod skb;
mod vlan_tc;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    programs::XdpContext,
};
use filter_common::{flags, Reason};

use crate::pkt::Pkt;

#[xdp]
pub fn portguard(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    let p = Pkt::new(&ctx);
    let Some(port) = port::record(ifindex) else {
        return xdp_action(account::finish(&ctx, &p, None, 0, Reason::UnboundPort));
    };
    // No binding (or no record at all: attached by hand, removed under us): fail closed.
    if port.flags & flags::BOUND == 0 {
        return xdp_action(account::finish(
            &ctx,
            &p,
            Some(port),
            port.slot,
            Reason::UnboundPort,
        ));
    }
    let verdict = policy::check(&p, port);
    xdp_action(account::finish(&ctx, &p, Some(port), port.slot, verdict))
}

#[inline(always)]
fn xdp_action(pass: bool) -> u32 {
    if pass {
        XDP_PASS
    } else {
        XDP_DROP
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

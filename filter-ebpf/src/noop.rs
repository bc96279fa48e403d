//! Floor programs for the benchmarks: the cost of running any XDP program at all.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    programs::XdpContext,
};

#[xdp]
pub fn noop_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[xdp]
pub fn noop_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

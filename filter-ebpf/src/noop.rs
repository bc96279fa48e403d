//! Floor programs for the benchmarks: the cost of running any XDP (or tc) program at all.
use aya_ebpf::{
    bindings::{
        xdp_action::{XDP_DROP, XDP_PASS},
        TC_ACT_UNSPEC,
    },
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

#[xdp]
pub fn noop_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[xdp]
pub fn noop_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

#[classifier]
pub fn noop_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

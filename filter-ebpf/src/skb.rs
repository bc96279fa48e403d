//! The checks of the XDP program as a tc ingress program, for ports where
//! XDP costs the tenant throughput (veth, `attach --mode tc`).
//!
//! Why: generic (skb-mode) XDP needs the whole frame in one linear buffer,
//! so the kernel copies every cloned or paged skb before the program runs:
//! every TCP super-frame a VM sends (TCP keeps its skbs for retransmission,
//! so they are clones). tc reads the same skb in place: no copy.
//!
//! Only the linear part is in reach of direct packet access. The stack puts
//! every header there, so legitimate traffic is judged without touching the
//! skb. A frame whose headers reach into the paged part (an AF_PACKET sender
//! choosing a short linear part, for instance) fails some read, and every
//! failed read ends in a drop verdict, never in `Pass`. So when the checks
//! drop a paged skb, the bytes the parsers may read are pulled into the
//! linear part and the program starts again on it (a tail call through
//! `SKB_RETRY`): the verdict is the one XDP would give the whole frame. The
//! second run cannot pull again (everything in reach), so it ends there.
//! Storm-control drops are not judged again: they are decided only after
//! every check passed, and a second run would take a second token. If the
//! pull or the tail call fails, the first verdict (a drop) stands.
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};
use filter_common::{flags, Reason};

use crate::{account, maps::SKB_RETRY, pkt, pkt::Pkt, policy, port};

/// Bytes pulled into the linear part for a second look: every offset a
/// parser may read (`pkt::MAX_OFFSET`) plus the longest read there.
const PULL_MAX: usize = pkt::MAX_OFFSET + 1 + 64;

/// Returns `TC_ACT_UNSPEC` (tcx "next": the VLAN program and the operator's
/// own ingress filters still run) or `TC_ACT_SHOT`; never `TC_ACT_OK`.
#[classifier]
pub fn portguard_skb(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the program's context; a plain u32 ctx field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mut p = Pkt::skb(&ctx);
    let Some(port) = port::record(ifindex) else {
        return tc_action(account::finish(&ctx, &p, None, 0, Reason::UnboundPort));
    };
    // No binding (or no record at all): fail closed, as in XDP.
    if port.flags & flags::BOUND == 0 {
        return tc_action(account::finish(
            &ctx,
            &p,
            Some(port),
            port.slot,
            Reason::UnboundPort,
        ));
    }
    let verdict = policy::check(&p, port);
    if verdict != Reason::Pass && !is_storm(verdict) {
        let want = if p.len() < PULL_MAX {
            p.len()
        } else {
            PULL_MAX
        };
        if p.in_reach() < want {
            if ctx.pull_data(want as u32).is_ok() {
                // SAFETY: SKB_RETRY[0] is this program (same type and
                // context); a failed tail call returns here.
                unsafe { SKB_RETRY.tail_call(&ctx, 0) };
            }
            // The pull invalidated every packet pointer, pulled or not.
            p = Pkt::skb(&ctx);
        }
    }
    tc_action(account::finish(&ctx, &p, Some(port), port.slot, verdict))
}

#[inline(always)]
fn is_storm(r: Reason) -> bool {
    r == Reason::BcastLimit || r == Reason::McastLimit || r == Reason::ArpLimit
}

#[inline(always)]
fn tc_action(pass: bool) -> i32 {
    if pass {
        TC_ACT_UNSPEC
    } else {
        TC_ACT_SHOT
    }
}

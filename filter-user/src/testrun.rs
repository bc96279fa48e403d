//! Running frames through the loaded program with BPF_PROG_TEST_RUN.
use anyhow::{Context, Result};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};

/// The 24-byte `xdp_md` passed as ctx_in: the kernel requires
/// data_end == frame length and egress_ifindex == 0.
pub fn xdp_md(ifindex: u32, frame_len: usize) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame_len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// Runs one frame as if received on `ifindex`; returns the XDP action (1 drop, 2 pass).
pub fn run_frame(prog: &Xdp, ifindex: u32, frame: &[u8]) -> Result<u32> {
    let ctx = xdp_md(ifindex, frame.len());
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: 1,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(r.return_value)
}

/// Runs one frame `repeat` times; returns (action, average duration per run).
pub fn time_frame(
    prog: &Xdp,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
) -> Result<(u32, std::time::Duration)> {
    let ctx = xdp_md(ifindex, frame.len());
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok((r.return_value, r.duration))
}

/// Runs one frame through the tc program (`portguard_skb`) as if received
/// on lo (ifindex 1: the kernel's default device for skb test runs); returns
/// the tc action (`TC_ACT_SHOT` = 2, `TC_ACT_UNSPEC` = -1 as u32).
pub fn run_skb(prog: &SchedClassifier, frame: &[u8]) -> Result<u32> {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(r.return_value)
}

/// [`run_skb`] `repeat` times; returns (tc action, average duration per run).
pub fn time_skb(
    prog: &SchedClassifier,
    frame: &[u8],
    repeat: u32,
) -> Result<(u32, std::time::Duration)> {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok((r.return_value, r.duration))
}

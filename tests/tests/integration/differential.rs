//! The XDP program against the reference model (`portguard::model`, written
//! from docs/policy.md): 100,000 random frames over ~100 random port states
//! must give the same action and the same counter changes (needs root).
//!
//! `REGRESSIONS` pins single cases: corner cases of the policy, and every
//! disagreement found so far, with the verdict docs/policy.md gives.
use portguard::{binding::Binding, model, spec::PortSpec, Reason};
use portguard_tests::difftest::{self, unhex, Harness, PortState};
use serde_json::{json, Value};

/// Fixed so that a failure is reproducible with `fuzz --seed`.
const SEED: u64 = 0x5eed_0001;

#[test]
fn differential_100k_frames() {
    let r = difftest::run(100_000, SEED).expect("differential run");
    eprintln!("{}", r.summary());
    assert_eq!(r.frames, 100_000);
    assert!(
        r.mismatches == 0,
        "{} mismatches; first:\n{}\n(replay: cargo run -p portguard-tests --bin fuzz -- --frames 100000 --seed {SEED})",
        r.mismatches,
        r.first_mismatch.as_deref().unwrap_or("?")
    );
    // The run must have exercised every verdict, with a fair share of passes.
    for reason in Reason::DROPS.iter().filter(|r| {
        !matches!(
            r,
            Reason::BcastLimit | Reason::McastLimit | Reason::ArpLimit
        )
    }) {
        let n = r.by_reason.get(reason.name()).copied().unwrap_or(0);
        assert!(n >= 100, "only {n} frames judged {}", reason.name());
    }
    assert!(r.by_reason["pass"] >= 15_000, "{:?}", r.by_reason);
    assert!(r.states >= 50, "{} port states", r.states);
}

/// A binding from a partial [`PortSpec`] JSON object (fields not given:
/// defaults with rate limits off, as in the differential run).
fn binding(partial: &Value) -> Binding {
    let mut p = json!({
        "iface": difftest::IFNAME,
        "mac": "02:00:00:00:00:01",
        "broadcast_pps": 0, "broadcast_burst": 0,
        "multicast_pps": 0, "multicast_burst": 0,
        "arp_pps": 0, "arp_burst": 0,
    });
    for (k, v) in partial.as_object().expect("port object") {
        p[k] = v.clone();
    }
    let p: PortSpec = serde_json::from_value(p).expect("port JSON");
    Binding::try_from(&p).expect("valid binding")
}

/// (frame hex, binding as partial JSON or "" for no record, verdict by
/// docs/policy.md, what the case is, open bug). MAC 02:00:00:00:00:01 is
/// the default bound MAC.
///
/// An entry with an open bug is a known disagreement of the program with
/// the policy: the test checks that the model still gives the policy's
/// verdict and that the program still differs, so that the suite stays
/// green until the fix lands and then says to close the entry (set the
/// last field to `None`), which turns it into an ordinary regression.
type Regression = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const REGRESSIONS: &[Regression] = &[
    (
        "ffffffffffff020000000001080600010800060400020200000000010000000002aaaaaaaaaac0000201",
        r#"{"ips": ["0.0.0.0/0"]}"#,
        "pass",
        "ARP reply from 0.0.0.0 with 0.0.0.0/0 bound (section 5.3: 0.0.0.0 is allowed v4 here)",
        None,
    ),
    (
        "ffffffffffff020000000001080600010800060400020200000000010000000002aaaaaaaaaac0000201",
        r#"{"ips": ["192.0.2.0/24"]}"#,
        "arp_spoof",
        "ARP reply from 0.0.0.0 is not a probe",
        None,
    ),
    (
        "02aa000000fe0200000000010800450000140001000040060000cb007107c0000201",
        r#"{"ips": ["0.0.0.0/0"]}"#,
        "pass",
        "IPv4 source under 0.0.0.0/0 (trie key of prefix length 64 + 0)",
        None,
    ),
    (
        "02aa000000fe02000000000186dd6000000000443c4020010db800000000000000000000001020010db80000000000000000000000013c000000000000003c000000000000003c000000000000003c000000000000003c0000000000000006000000000000000000000000000000000000000000000000000000",
        r#"{"ips": ["2001:db8::10"]}"#,
        "pass",
        "6 extension headers, then TCP",
        None,
    ),
    (
        "02aa000000fe02000000000186dd60000000004c3c4020010db800000000000000000000001020010db80000000000000000000000013c000000000000003c000000000000003c000000000000003c000000000000003c000000000000003c0000000000000006000000000000000000000000000000000000000000000000000000",
        r#"{"ips": ["2001:db8::10"]}"#,
        "malformed",
        "7 extension headers, then TCP",
        None,
    ),
    (
        "02aa000000fe02000000000186dd6000000000303c4020010db800000000000000000000001020010db80000000000000000000000013c000000000000003c000000000000003c000000000000003c000000000000002c000000000000003a000008000000ff",
        r#"{"ips": ["2001:db8::10"]}"#,
        "pass",
        "non-first fragment as the 6th header: source only",
        None,
    ),
    (
        "02aa000000fe02000000000186dd6000000000303c4020010db800000000000000000000001020010db80000000000000000000000013c000000000000003c000000000000003c000000000000003c000000000000002c000000000000003a000008000000ff",
        r#"{"ips": ["2001:db8::11"]}"#,
        "ipv6_spoof",
        "non-first fragment as the 6th header, foreign source",
        None,
    ),
    (
        "33330000000102000000000186dd6000000000383aff20010db800000000000000000000001020010db8000000000000000000000001870000000000000020010db80000000000000000000000010e010102030405060e010102030405060e010102030405060101020000000001",
        r#"{"ips": ["2001:db8::10"]}"#,
        "pass",
        "NS with 4 options, own SLLA last, ending at the end of payload",
        None,
    ),
    (
        "33330000000102000000000186dd6000000000403aff20010db800000000000000000000001020010db8000000000000000000000001870000000000000020010db80000000000000000000000010e010102030405060e010102030405060e010102030405060e010102030405060101020000000001",
        r#"{"ips": ["2001:db8::10"]}"#,
        "nd_spoof",
        "NS with 5 options",
        None,
    ),
    (
        "33330000000102000000000186dd6000000000203aff20010db800000000000000000000001020010db8000000000000000000000001870000000000000020010db800000000000000000000000101020200000000010000000000000000",
        r#"{"ips": ["2001:db8::10"]}"#,
        "malformed",
        "SLLA claiming 16 bytes with 8 in the payload and 8 of frame padding",
        None,
    ),
    (
        "3333ff00001002000000000186dd6000000000183aff00000000000000000000000000000000ff0200000000000000000001ff000010870000000000000020010db8000000000000000000000010",
        r#"{"ips": ["2001:db8::10"]}"#,
        "pass",
        "DAD NS from :: to the solicited-node address of its target",
        None,
    ),
    (
        "02aa000000fe02000000000181000ffe0800450000140001000040060000c0000201c0000201",
        r#"{"ips": ["192.0.2.1"], "allow_vlan": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,4094]}"#,
        "pass",
        "VID 4094, the 16th entry of a full VLAN list",
        None,
    ),
    (
        "02aa000000fe02000000000181000ffd0800450000140001000040060000c0000201c0000201",
        r#"{"ips": ["192.0.2.1"], "allow_vlan": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,4094]}"#,
        "vlan",
        "VID 4093, not in a full VLAN list",
        None,
    ),
    (
        "02aa000000fe020000000001900000000000",
        r#"{"allow_ethertype": [2114, 32821, 34825, 35001, 35002, 35020, 35045, 36864]}"#,
        "pass",
        "EtherType 0x9000, the 8th entry of a full list",
        None,
    ),
    (
        "02aa000000fe020000000001900100000000",
        r#"{"allow_ethertype": [2114, 32821, 34825, 35001, 35002, 35020, 35045, 36864]}"#,
        "ethertype",
        "EtherType 0x9001, not in a full list",
        None,
    ),
    (
        "ffffffffffff02000000000108004500001b0001000040110000c0000201ffffffff004300440008000000000000000000000000000000000000000000",
        r#"{"ips": ["192.0.2.1"], "allow_dhcp_server": true}"#,
        "malformed",
        "UDP header cut by the IPv4 total length, frame padded",
        None,
    ),
    (
        "02aa000000fe0200000000010800450000140001000040060000c0000299c0000201",
        r#"{"ips": ["192.0.2.1"], "mode": "monitor"}"#,
        "ipv4_spoof",
        "monitor mode: would_drop + passed, frame passes",
        None,
    ),
    (
        "02aa000000fe0200000000010800450000140001000040060000c0000201c0000201",
        r#""#,
        "unbound_port",
        "no record for the ifindex (slot 0)",
        None,
    ),
];

#[test]
fn regressions() {
    let mut h = Harness::new().expect("harness");
    let mut failures = Vec::new();
    for (i, (frame_hex, binding_json, verdict, what, open_bug)) in REGRESSIONS.iter().enumerate() {
        let frame = unhex(frame_hex).expect("frame hex");
        let state = if binding_json.is_empty() {
            PortState::NoRecord
        } else {
            let v: Value = serde_json::from_str(binding_json).expect("binding JSON");
            PortState::Bound(binding(&v))
        };
        let verdict = Reason::from_name(verdict).expect("reason name");
        // The table must say what the model (the policy) says.
        let model_says = model::evaluate(state.binding(), &frame).reason;
        assert_eq!(model_says, verdict, "model, case {i} ({what})");
        if let Some(p) = h.set_state(state.clone()).expect("set state") {
            failures.push(format!("case {i} ({what}): {p}"));
            continue;
        }
        let mismatch = difftest::check_frame(&mut h, &frame, what).expect("test run");
        match (mismatch, open_bug) {
            (None, None) => {}
            (Some(m), None) => failures.push(format!("case {i}:\n{m}")),
            (Some(m), Some(bug)) => eprintln!("case {i}: known bug still open: {bug}\n{m}\n"),
            (None, Some(bug)) => failures.push(format!(
                "case {i} ({what}) now agrees with the policy: the bug \"{bug}\" is fixed; \
                 set its last field to None"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

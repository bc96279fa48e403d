//! The one integration-test binary (aya's layout): every suite is a module
//! here, so aya, tokio and the rest link once instead of once per suite.
//!
//! Layout: `tests/tests/integration/<suite>.rs` (or `<suite>/mod.rs` with
//! submodules, as `verdicts/` has), one `mod <suite>;` line below per suite,
//! helpers shared between suites in `tests/src` (the `portguard_tests`
//! crate). Test names read `<suite>::<test>`: run one suite with
//! `cargo test -p portguard-tests --test integration <suite>::`.
//!
//! All suites share one process and cargo's test threads (2 here): a test
//! that loads the CPUs or measures time takes `portguard_tests::serial::heavy()`
//! so it never overlaps another such test, whichever suite it is in.
//! Namespace, link and pin names are already unique per process and test
//! (`pgt-<pid>-<n>`).

mod attack_tools_netns;
mod cli_errors;
mod core_netns;
mod differential;
mod fleet;
mod ipv6_netns;
mod l2_policy_netns;
mod lifecycle_netns;
mod observability;
mod operations;
mod port_index;
mod storm_netns;
mod traffic_netns;
mod verdicts;
mod vm_guest;

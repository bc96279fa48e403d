//! `cargo xtask bench` runs this: portguard's benchmarks (see docs/bench.md).
fn main() -> std::process::ExitCode {
    portguard_tests::bench::main()
}

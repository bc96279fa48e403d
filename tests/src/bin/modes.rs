//! Attach modes compared: TCP speed and flood cost, native against generic,
//! on a veth and on a tap (docs/bench.md, "Attach modes"). Needs root.
//! `--json FILE` also writes every sample.
fn main() -> std::process::ExitCode {
    use portguard_tests::bench::modes;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = match args.as_slice() {
        [] => None,
        [flag, path] if flag == "--json" => Some(path.clone()),
        _ => {
            eprintln!("usage: modes [--json FILE]");
            return std::process::ExitCode::FAILURE;
        }
    };
    match modes::run(&modes::Opts::quick()) {
        Ok(doc) => {
            println!("{}", modes::markdown(&doc));
            if let Some(p) = json {
                if let Err(e) = std::fs::write(&p, doc.to_string()) {
                    eprintln!("modes: writing {p}: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("modes: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

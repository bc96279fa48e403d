//! `portguard`: attach the XDP port filter, manage bindings, read counters.
mod cli;

fn main() {
    if let Err(e) = cli::run() {
        // One line naming the problem: the outermost context first, then its causes.
        let msg = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        eprintln!("portguard: error: {msg}");
        std::process::exit(1);
    }
}

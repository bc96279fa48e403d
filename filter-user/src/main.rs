//! `portguard`: attach the XDP port filter, manage bindings, read counters.
mod cli;

fn main() {
    if let Err(e) = cli::run() {
        // One line naming the problem: the outermost context first, then its causes.
        eprintln!("portguard: error: {}", portguard::error::one_line(&e));
        std::process::exit(1);
    }
}

//! How errors read: every portguard error is printed as one line.

/// An anyhow chain as one line, the outermost context first, then its
/// causes: `binding vm1: cannot open ...: No such file or directory`.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn chain_on_one_line() {
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(super::one_line(&e), "outer: middle: inner");
    }
}

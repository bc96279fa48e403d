//! `[[guard]]` interface patterns: interfaces whose names match are VM ports
//! even before any binding is known, so they are attached fail-closed
//! (`unbound_port`) the moment they appear; a binding opens them later.
use std::fmt;

use thiserror::Error;

/// One pattern: `*` matches any run of characters, `?` any one character.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guard {
    pattern: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("empty guard pattern")]
    Empty,
    #[error("guard pattern {0:?} is longer than 15 bytes")]
    TooLong(String),
    #[error("invalid guard pattern {0:?}: interface names have no '/', ':' or whitespace")]
    BadChar(String),
    #[error("guard pattern {0:?} matches every interface (loopback, bridges, ...): name a prefix, e.g. \"vnet*\"")]
    MatchesAll(String),
}

impl Guard {
    pub fn new(pattern: &str) -> Result<Guard, GuardError> {
        if pattern.is_empty() {
            return Err(GuardError::Empty);
        }
        if pattern.len() >= libc::IFNAMSIZ {
            return Err(GuardError::TooLong(pattern.into()));
        }
        if pattern.contains(['/', ':'])
            || pattern.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(GuardError::BadChar(pattern.into()));
        }
        if pattern.chars().all(|c| c == '*') {
            return Err(GuardError::MatchesAll(pattern.into()));
        }
        Ok(Guard {
            pattern: pattern.into(),
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.pattern.as_bytes(), name.as_bytes())
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// The first guard matching `name`.
pub fn matching<'a>(guards: &'a [Guard], name: &str) -> Option<&'a Guard> {
    guards.iter().find(|g| g.matches(name))
}

/// Iterative glob with backtracking to the last `*` (linear in practice).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |p: &str| Guard::new(p).unwrap();
        assert!(g("vnet*").matches("vnet0"));
        assert!(g("vnet*").matches("vnet"));
        assert!(!g("vnet*").matches("xvnet0"));
        assert!(g("tap?").matches("tap1"));
        assert!(!g("tap?").matches("tap12"));
        assert!(g("t*p*x").matches("tapx"));
        assert!(g("t*p*x").matches("tpppx"));
        assert!(!g("t*p*x").matches("tapxy"));
        assert!(g("*-h").matches("vm-h"));
        assert!(g("vm1").matches("vm1") && !g("vm1").matches("vm10"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!(Guard::new(""), Err(GuardError::Empty));
        assert!(matches!(Guard::new("*"), Err(GuardError::MatchesAll(_))));
        assert!(matches!(Guard::new("a/b*"), Err(GuardError::BadChar(_))));
        assert!(matches!(
            Guard::new("0123456789abcdef"),
            Err(GuardError::TooLong(_))
        ));
    }
}

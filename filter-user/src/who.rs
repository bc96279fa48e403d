//! Who runs portguard (for the audit log).

/// Who made the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Who {
    pub uid: u32,
    /// Name from the password database, or the uid as a string if it has none.
    pub user: String,
    /// `SUDO_USER` from the environment, when set and non-empty.
    pub sudo_user: Option<String>,
}

impl Who {
    pub fn current() -> Who {
        let uid = rustix::process::getuid().as_raw();
        Who {
            uid,
            user: user_name(uid).unwrap_or_else(|| uid.to_string()),
            sudo_user: std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()),
        }
    }
}

/// The user name of `uid` from the password database (NSS: files, LDAP, ...).
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_has_a_name() {
        assert_eq!(super::user_name(0).as_deref(), Some("root"));
    }
}

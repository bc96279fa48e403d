//! Who runs portguard (for the audit log).
use std::ffi::CStr;

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
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        Who {
            uid,
            user: user_name(uid).unwrap_or_else(|| uid.to_string()),
            sudo_user: std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()),
        }
    }
}

/// The user name of `uid` (getpwuid_r).
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: passwd is plain data; buf outlives the call and its length is passed.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || out.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points at a NUL-terminated string inside buf.
        return Some(
            unsafe { CStr::from_ptr(pw.pw_name) }
                .to_string_lossy()
                .into_owned(),
        );
    }
}

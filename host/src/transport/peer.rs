//! Who may talk to the provider socket. Its file mode (0660) lets the socket's group connect, and anyone
//! who can cast can change every load balancer: the kernel's word on the peer (SO_PEERCRED) is checked
//! against `allowed_peer_users` / `allowed_peer_groups`.

use std::ffi::CString;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;

use anyhow::{bail, Result};

/// The user octavia-api runs as on the usual installations.
const OCTAVIA_USER: &str = "octavia";

/// Peers allowed to send requests: by user id, or by primary group id (SO_PEERCRED carries no
/// supplementary groups).
#[derive(Clone, Debug, PartialEq)]
pub struct Peers {
    pub users: Vec<u32>,
    pub groups: Vec<u32>,
}

impl Default for Peers {
    /// The host's own user, root, and `octavia` when that user exists; no groups.
    fn default() -> Peers {
        // SAFETY: getuid has no preconditions and cannot fail.
        let mut users = vec![unsafe { libc::getuid() }, 0];
        if let Ok(Some(octavia)) = user_id(OCTAVIA_USER) {
            users.push(octavia);
        }
        users.sort_unstable();
        users.dedup();
        Peers { users, groups: Vec::new() }
    }
}

impl Peers {
    pub fn allows(&self, peer: &Credentials) -> bool {
        self.users.contains(&peer.uid) || self.groups.contains(&peer.gid)
    }
}

/// The process at the other end of a Unix socket, as the kernel recorded it when it connected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Credentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub fn credentials(stream: &UnixStream) -> std::io::Result<Credentials> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the size passed; the fd is open for the call.
    let rc = unsafe { libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Credentials { pid: cred.pid, uid: cred.uid, gid: cred.gid })
}

/// A comma-separated list of user names or numeric ids, as ids; `key` names the setting in errors.
pub fn parse_users(key: &str, list: &str) -> Result<Vec<u32>> {
    parse(key, list, "user", user_id)
}

/// A comma-separated list of group names or numeric ids, as ids.
pub fn parse_groups(key: &str, list: &str) -> Result<Vec<u32>> {
    parse(key, list, "group", group_id)
}

fn parse(key: &str, list: &str, what: &str, lookup: fn(&str) -> std::io::Result<Option<u32>>) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let id = match name.parse::<u32>() {
            Ok(id) => id,
            Err(_) => match lookup(name) {
                Ok(Some(id)) => id,
                Ok(None) => bail!("[driver_loxilb] {key}: no {what} named {name:?} on this system"),
                Err(e) => bail!("[driver_loxilb] {key}: looking up {what} {name:?}: {e}"),
            },
        };
        ids.push(id);
    }
    Ok(ids)
}

/// getpwnam_r/getgrnam_r want a buffer; this is ample for a name entry and grown if not.
const LOOKUP_BUFFER: usize = 4096;

fn user_id(name: &str) -> std::io::Result<Option<u32>> {
    let name = CString::new(name).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut size = LOOKUP_BUFFER;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: zeroed passwd is a valid out-parameter; buf outlives the call and its size is passed.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 => return Ok((!found.is_null()).then_some(entry.pw_uid)),
            libc::ERANGE if size < (1 << 20) => size *= 4,
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

fn group_id(name: &str) -> std::io::Result<Option<u32>> {
    let name = CString::new(name).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut size = LOOKUP_BUFFER;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: as in `user_id`.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe { libc::getgrnam_r(name.as_ptr(), &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 => return Ok((!found.is_null()).then_some(entry.gr_gid)),
            libc::ERANGE if size < (1 << 20) => size *= 4,
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_resolve_and_unknown_names_are_named() {
        assert_eq!(parse_users("allowed_peer_users", "root, 4242").unwrap(), vec![0, 4242]);
        assert_eq!(parse_groups("allowed_peer_groups", "root,").unwrap(), vec![0]);
        let err = parse_users("allowed_peer_users", "no-such-user-here").unwrap_err().to_string();
        assert!(err.contains("allowed_peer_users") && err.contains("no-such-user-here"), "{err}");
        assert!(parse_groups("allowed_peer_groups", "no-such-group-here").unwrap_err().to_string().contains("allowed_peer_groups"));
    }

    #[test]
    fn the_kernel_names_the_peer() {
        let (a, _b) = UnixStream::pair().unwrap();
        let me = credentials(&a).unwrap();
        assert_eq!(me.pid as u32, std::process::id());
        assert!(Peers::default().allows(&me), "the host's own user is allowed by default");
        assert!(!Peers { users: vec![me.uid.wrapping_add(1)], groups: vec![] }.allows(&me));
        assert!(Peers { users: vec![], groups: vec![me.gid] }.allows(&me));
    }
}

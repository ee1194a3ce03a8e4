//! One host per mapping: an exclusive `flock` on `<mapping_storage_path>.lock`, held for the life of the
//! process (the kernel drops it when the process ends, however it ends), the file naming the holder's pid.
//!
//! Two hosts on one mapping would both append to the journal and read the inbox, and the second would
//! take over the first one's sockets; `force-recovery` under a serving host would rewrite its mapping.
//! The lock file is never deleted: deleting it would let a third process lock a new file while a second
//! still holds the old one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock, held until dropped.
pub struct StateLock {
    _file: File,
    pub path: PathBuf,
}

pub fn lock_path(mapping: &Path) -> PathBuf {
    let mut name = mapping.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl StateLock {
    /// Takes the lock of the mapping at `mapping`, or says which process holds it.
    pub fn acquire(mapping: &Path) -> Result<StateLock, String> {
        let path = lock_path(mapping);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("locking {}: {error}", path.display()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("another loxilb-octavia process (pid {holder})") };
            return Err(format!(
                "{who} holds {}: it is serving the mapping {}. Stop it first (two hosts on one mapping would both write its journal)",
                path.display(),
                mapping.display()
            ));
        }
        let written = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id()));
        written.map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(StateLock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = std::env::temp_dir().join(format!("loxilb-lock-{}", std::process::id()));
        let mapping = dir.join("state/m.json");
        let first = StateLock::acquire(&mapping).unwrap();
        assert_eq!(fs::read_to_string(&first.path).unwrap(), format!("{}\n", std::process::id()));
        // flock conflicts between open files even within one process.
        let err = StateLock::acquire(&mapping).err().unwrap();
        assert!(err.contains(&format!("pid {}", std::process::id())) && err.contains("m.json.lock"), "{err}");
        drop(first);
        let again = StateLock::acquire(&mapping).unwrap();
        drop(again);
        fs::remove_dir_all(dir).unwrap();
    }
}

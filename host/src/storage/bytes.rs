//! A file's bytes as a load reads them: a large file is mapped, not copied. A snapshot of 100k mappings is
//! ~50 MB, and copying it into the heap (the kernel's copy and the buffer's page faults) took ~15 ms of a
//! ~75 ms load; mapping the page cache takes ~1 ms.
//!
//! The mapping is private and read-only but for the page `unseal` closes the document on (where its
//! trailer began): that write copies the page and leaves the file alone. (Mapped writable, every page
//! would be copied as it is mapped.) Snapshots are replaced by rename, never rewritten in place, but the
//! file replaced is then released a few megabytes at a time (`release_gradually`), and a file cut short
//! while mapped faults on access (SIGBUS). So only the process that owns the files maps them, while none
//! of its writers is under way; a reader beside a serving host (`validate-mappings`, `show-mappings`)
//! copies them ([`Reading::Copy`]). The mapping is unmapped once the load has indexed it.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::Path;
use std::ptr::NonNull;

/// Files from this size on are mapped.
const MAP_FROM: usize = 4 << 20;

/// How a file may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Mapped when large: by the process that owns the files, none of whose writers is under way.
    MayMap,
    /// Copied whatever its size: another process may release the file while it is read.
    Copy,
}

#[cfg(test)]
thread_local! {
    static MAPPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many files this thread has mapped.
#[cfg(test)]
pub fn mapped_by_this_thread() -> usize {
    MAPPED.with(|m| m.get())
}

pub enum FileBytes {
    Heap(Vec<u8>),
    Mapped(Mapped),
}

pub struct Mapped {
    at: NonNull<u8>,
    /// The length mapped (what `munmap` takes).
    mapped: usize,
    /// The length in use (`truncate` shortens it).
    len: usize,
}

// SAFETY: a private mapping owned by this value alone; `&self` only reads it.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `read`, unmapped once.
        unsafe { libc::munmap(self.at.as_ptr().cast(), self.mapped) };
    }
}

impl FileBytes {
    /// The whole file at `path`.
    pub fn read(path: &Path, how: Reading) -> std::io::Result<FileBytes> {
        let file = File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len < MAP_FROM || how == Reading::Copy {
            return read_into_heap(file, len).map(FileBytes::Heap);
        }
        #[cfg(test)]
        MAPPED.with(|m| m.set(m.get() + 1));
        Ok(FileBytes::Mapped(map(&file, len)?))
    }

    /// Ends the bytes at `end + 2` with `\n}` written at `end` (`end + 2` must be within them).
    pub fn close_at(&mut self, end: usize) {
        const CLOSE: &[u8] = b"\n}";
        match self {
            FileBytes::Heap(v) => {
                v.truncate(end);
                v.extend_from_slice(CLOSE);
            }
            FileBytes::Mapped(m) => {
                assert!(end + CLOSE.len() <= m.len, "closing a document within its bytes");
                let page = page_size();
                let start = (m.at.as_ptr() as usize + end) & !(page - 1);
                let stop = m.at.as_ptr() as usize + end + CLOSE.len();
                // SAFETY: pages of this mapping (its start is page-aligned, and `start..stop` lies within
                // it); made writable (privately), then written within `len`.
                unsafe {
                    if libc::mprotect(start as *mut libc::c_void, stop - start, libc::PROT_READ | libc::PROT_WRITE) != 0 {
                        panic!("making a mapped page writable: {}", std::io::Error::last_os_error());
                    }
                    std::ptr::copy_nonoverlapping(CLOSE.as_ptr(), m.at.as_ptr().add(end), CLOSE.len());
                }
                m.len = end + CLOSE.len();
            }
        }
    }

    pub fn into_vec(self) -> Vec<u8> {
        match self {
            FileBytes::Heap(v) => v,
            FileBytes::Mapped(m) => m.to_vec(),
        }
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(v: Vec<u8>) -> FileBytes {
        FileBytes::Heap(v)
    }
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` ≤ `mapped` bytes from `at` are mapped readable for this value's life.
        unsafe { std::slice::from_raw_parts(self.at.as_ptr(), self.len) }
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Heap(v) => v,
            FileBytes::Mapped(m) => m,
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn map(file: &File, len: usize) -> std::io::Result<Mapped> {
    use std::os::fd::AsRawFd;
    // SAFETY: a new private mapping of an open file; nothing else refers to it. MAP_POPULATE maps every page
    // now, in one call, instead of a fault per page on first touch.
    let at = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_POPULATE, file.as_raw_fd(), 0) };
    if at == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Mapped { at: NonNull::new(at.cast()).expect("mmap returns a non-null mapping"), mapped: len, len })
}

/// Reads a whole file into the heap (journal segments: read line by line, kept as records).
pub fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    read_into_heap(file, len)
}

/// The `len` bytes of `file`. A large journal segment is as large as a snapshot: its buffer is advised into
/// huge pages, so filling it takes tens of page faults instead of twenty thousand (on a VM, half the time
/// of the read).
fn read_into_heap(mut file: File, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len + 1);
    const HUGE: usize = 2 << 20;
    #[cfg(target_os = "linux")]
    if len >= 2 * HUGE {
        let at = buf.as_mut_ptr() as usize;
        let (start, end) = (at.next_multiple_of(HUGE), (at + len) & !(HUGE - 1));
        // SAFETY: a hint about pages of this buffer's own allocation; it changes no contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_is_mapped_and_reads_as_its_bytes_and_a_write_stays_private() {
        let dir = std::env::temp_dir().join(format!("loxilb-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("large");
        let content: Vec<u8> = (0..MAP_FROM + 4099).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut bytes = FileBytes::read(&path, Reading::MayMap).unwrap();
        assert!(matches!(bytes, FileBytes::Mapped(_)));
        assert_eq!(&bytes[..], &content[..]);
        // Across a page boundary.
        bytes.close_at(4095);
        assert_eq!(std::fs::read(&path).unwrap(), content, "the file is untouched");
        assert_eq!(bytes.into_vec(), [&content[..4095], b"\n}"].concat());

        std::fs::write(&path, b"small").unwrap();
        let mut small = FileBytes::read(&path, Reading::MayMap).unwrap();
        assert!(matches!(small, FileBytes::Heap(_)));
        assert_eq!(&small[..], b"small");
        small.close_at(2);
        assert_eq!(&small[..], b"sm\n}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

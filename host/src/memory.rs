//! How the process's allocator gives memory back.
//!
//! glibc raises its mmap threshold to the size of the largest block freed so far (up to 32 MiB): after a
//! load has read and parsed a snapshot of tens of megabytes, every later large buffer (a snapshot's
//! encoding, a rule list read from LoxiLB, a full render's answer) is carved from the heap, and once freed
//! stays resident between the small long-lived allocations of the mapping. Serving 100k mappings that
//! kept ~33 MB resident for nothing (storage bench, "serve over this file": 182 → 149 MB). A fixed
//! threshold keeps large buffers in mappings of their own, returned to the system when freed.

/// Blocks from this size on get a mapping of their own (glibc's initial threshold, kept fixed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Sets the allocator up; call first thing in `main`, before threads start.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

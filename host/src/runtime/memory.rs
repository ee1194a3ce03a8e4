//! Policy linear memories advised into transparent huge pages.
//!
//! A policy's memory grows by tens of megabytes when it renders every rule of a large mapping (the first
//! reconciliation after a start). In wasmtime's own memories each 4 KiB page of it is a zero-fill fault
//! when first written; when policies still read the whole snapshot (~90 MB at 100k mappings, before WIT
//! 0.2.0), those faults were half of their part of a load. These memories have the same layout (the reservation wasmtime asks for, then its
//! guard region, all inaccessible until grown into) but ask the kernel for 2 MiB pages.

use std::ptr::null_mut;

use wasmtime::{bail, Result};
use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

const HUGE_PAGE: usize = 2 << 20;

pub struct HugePageMemories;

struct HugePageMemory {
    /// The mapping as made (unaligned), for unmapping.
    mapping: *mut libc::c_void,
    mapping_len: usize,
    /// `mapping` rounded up to a huge page: the memory's first byte.
    base: *mut u8,
    size: usize,
    reserved: usize,
}

// SAFETY: the memory is plain bytes owned by one wasmtime memory; wasmtime serialises access to it.
unsafe impl Send for HugePageMemory {}
unsafe impl Sync for HugePageMemory {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

// SAFETY: each memory is a fresh anonymous mapping (zero-filled), at least `reserved + guard` bytes long,
// whose base never moves; bytes past its size stay inaccessible, so wasmtime's guard-based bounds
// checks hold.
unsafe impl MemoryCreator for HugePageMemories {
    fn new_memory(
        &self,
        _: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved: Option<usize>,
        guard: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        // Without a reservation asked for, reserve the most the memory may grow to (4 GiB for a 32-bit
        // memory without a maximum): it is address space only.
        let reserved = reserved.unwrap_or(maximum.unwrap_or(1 << 32)).max(minimum).next_multiple_of(page_size());
        let mapping_len = reserved + guard + HUGE_PAGE;
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let mapping = unsafe { libc::mmap(null_mut(), mapping_len, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0) };
        if mapping == libc::MAP_FAILED {
            return Err(format!("reserving {mapping_len} bytes for a policy memory: {}", std::io::Error::last_os_error()));
        }
        let base = (mapping as usize).next_multiple_of(HUGE_PAGE) as *mut u8;
        // SAFETY: a hint about pages of the mapping just made. Ignored where huge pages are off.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::madvise(base.cast(), reserved, libc::MADV_HUGEPAGE)
        };
        let mut memory = HugePageMemory { mapping, mapping_len, base, size: 0, reserved };
        memory.grow_to(minimum).map_err(|e| e.to_string())?;
        Ok(Box::new(memory))
    }
}

// SAFETY: `as_ptr` is stable for the memory's life and `size` bytes from it are readable and writable.
unsafe impl LinearMemory for HugePageMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.reserved
    }

    fn grow_to(&mut self, new_size: usize) -> Result<()> {
        if new_size > self.reserved {
            bail!("a policy memory cannot grow to {new_size} bytes (reserved {})", self.reserved);
        }
        let accessible = self.size.next_multiple_of(page_size());
        let wanted = new_size.next_multiple_of(page_size());
        if wanted > accessible {
            // SAFETY: pages inside this memory's own reservation.
            if unsafe { libc::mprotect(self.base.add(accessible).cast(), wanted - accessible, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
                bail!("growing a policy memory to {new_size} bytes: {}", std::io::Error::last_os_error());
            }
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for HugePageMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new_memory`; wasmtime drops the memory after its last use.
        unsafe { libc::munmap(self.mapping, self.mapping_len) };
    }
}

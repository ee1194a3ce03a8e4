//! The process's allocator: mimalloc, for every binary linking the host (the `loxilb-octavia` binary,
//! its tests and benches measure the same allocator).
//!
//! glibc's malloc slowed down as the heap grew: at 100k mappings an operation's own cost was 172–181 µs
//! against 118–135 µs with mimalloc (storage bench, steady state, alternating runs, 2026-12-06), much of
//! the difference in `_int_malloc` and `malloc_consolidate` over the index's many small long-lived
//! blocks. glibc also kept large freed buffers (a snapshot's encoding, a rule list read from LoxiLB)
//! resident between those blocks unless its mmap threshold was pinned; mimalloc gives freed segments back
//! on its own (serving 100k mappings: 106–109 → 93–98 MB resident).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod tests {
    use std::ffi::c_void;

    extern "C" {
        /// Part of every mimalloc build: whether `p` lies in memory mimalloc manages.
        fn mi_is_in_heap_region(p: *const c_void) -> bool;
    }

    #[test]
    fn rust_allocations_come_from_mimalloc() {
        for size in [16, 4096, 1 << 20, 64 << 20] {
            let block = vec![1u8; size];
            // SAFETY: only asks about an address.
            assert!(unsafe { mi_is_in_heap_region(block.as_ptr().cast()) }, "a {size}-byte block is not mimalloc's");
        }
    }
}

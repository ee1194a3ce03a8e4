//! The policy's allocator: free lists of small blocks in front of the toolchain's (dlmalloc).
//!
//! A policy call allocates and frees many small blocks (ids, keys, decoded entries, the plan's strings)
//! and dlmalloc's bins, chunk headers and coalescing were a quarter of a translation's time in the
//! sandbox. A freed small block is kept on a list of its size class and handed out again as is; each
//! class keeps at most `CLASS_BYTES`, beyond which blocks go back to dlmalloc (so a burst of one size,
//! a full render say, does not hold its memory from every other size for good). A wasm32 component
//! without threads runs one call at a time, so the lists need no lock.
//!
//! The SDK installs it for wasm32 builds under its default feature `allocator`; a policy that wants
//! another allocator turns the feature off.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr::null_mut;

/// Size classes are multiples of `GRANULE` up to `LARGEST`; larger blocks go to the allocator below.
const GRANULE: usize = 8;
const LARGEST: usize = 1024;
const CLASSES: usize = LARGEST / GRANULE + 1;
/// What one class may keep on its list.
const CLASS_BYTES: usize = 256 << 10;

struct Lists {
    heads: [*mut u8; CLASSES],
    counts: [usize; CLASSES],
}

/// Free lists over `A`. Not `Sync` by itself: `installed::Policy` is the single-threaded wasm32 instance.
pub struct SmallBlocks<A> {
    below: A,
    lists: UnsafeCell<Lists>,
}

impl<A> SmallBlocks<A> {
    pub const fn new(below: A) -> SmallBlocks<A> {
        SmallBlocks { below, lists: UnsafeCell::new(Lists { heads: [null_mut(); CLASSES], counts: [0; CLASSES] }) }
    }
}

/// The class a layout's block belongs to, and its block's layout below, or `None` for a block that is
/// not kept (large, or aligned beyond what the blocks below guarantee).
fn class(layout: Layout) -> Option<(usize, Layout)> {
    if layout.size() > LARGEST || layout.align() > GRANULE {
        return None;
    }
    let class = layout.size().div_ceil(GRANULE).max(1);
    // The size is at most LARGEST and the alignment GRANULE: always a valid layout.
    Some((class, Layout::from_size_align(class * GRANULE, GRANULE).ok()?))
}

impl<A: GlobalAlloc> SmallBlocks<A> {
    /// # Safety
    /// As [`GlobalAlloc::alloc`]; and no other call on `self` runs meanwhile.
    unsafe fn take(&self, class: usize, block: Layout) -> *mut u8 {
        // SAFETY: the caller guarantees exclusive access.
        let lists = unsafe { &mut *self.lists.get() };
        let head = lists.heads[class];
        if head.is_null() {
            // SAFETY: a valid, non-zero layout.
            return unsafe { self.below.alloc(block) };
        }
        // SAFETY: a kept block holds the next block's address in its first word (blocks are ≥ 8 bytes,
        // aligned to 8).
        lists.heads[class] = unsafe { head.cast::<*mut u8>().read() };
        lists.counts[class] -= 1;
        head
    }

    /// # Safety
    /// `ptr` is a block of `class` from this allocator, no longer in use; no other call runs meanwhile.
    unsafe fn keep(&self, ptr: *mut u8, class: usize, block: Layout) {
        // SAFETY: the caller guarantees exclusive access.
        let lists = unsafe { &mut *self.lists.get() };
        if (lists.counts[class] + 1) * block.size() > CLASS_BYTES {
            // SAFETY: allocated below with this layout.
            return unsafe { self.below.dealloc(ptr, block) };
        }
        // SAFETY: the block is at least one word, aligned to one, and ours again.
        unsafe { ptr.cast::<*mut u8>().write(lists.heads[class]) };
        lists.heads[class] = ptr;
        lists.counts[class] += 1;
    }
}

// SAFETY: blocks come from `below` with a layout at least as large and as aligned as asked; a block is
// handed out once until freed; every method keeps to the single caller that `SmallBlocks` requires.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SmallBlocks<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            // SAFETY: forwarded contract.
            Some((class, block)) => unsafe { self.take(class, block) },
            // SAFETY: forwarded contract.
            None => unsafe { self.below.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            Some((class, block)) => {
                // SAFETY: forwarded contract.
                let ptr = unsafe { self.take(class, block) };
                if !ptr.is_null() {
                    // SAFETY: the block holds block.size() bytes.
                    unsafe { ptr.write_bytes(0, block.size()) };
                }
                ptr
            }
            // SAFETY: forwarded contract.
            None => unsafe { self.below.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class(layout) {
            // SAFETY: the block was handed out for this layout, so of this class.
            Some((class, block)) => unsafe { self.keep(ptr, class, block) },
            // SAFETY: forwarded contract.
            None => unsafe { self.below.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The new layout is valid: GlobalAlloc's contract.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else { return null_mut() };
        match (class(layout), class(new_layout)) {
            // The block already holds the new size.
            (Some((old, _)), Some((new, _))) if old == new => ptr,
            // SAFETY: forwarded contract; neither block is one of ours.
            (None, None) => unsafe { self.below.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: forwarded contract.
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both hold at least the smaller size, and are distinct blocks.
                    unsafe {
                        moved.copy_from_nonoverlapping(ptr, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

/// The single-threaded component's instance (wasm32 without the atomics feature has no threads).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics"), feature = "allocator"))]
mod installed {
    struct Policy(super::SmallBlocks<std::alloc::System>);
    // SAFETY: no threads, so never shared between two.
    unsafe impl Sync for Policy {}
    // SAFETY: delegates to the one instance; see SmallBlocks.
    unsafe impl std::alloc::GlobalAlloc for Policy {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { self.0.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { self.0.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: forwarded.
            unsafe { self.0.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
    }
    #[global_allocator]
    static ALLOCATOR: Policy = Policy(super::SmallBlocks::new(std::alloc::System));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Counts what reaches the allocator below, by size.
    #[derive(Default)]
    struct Counting {
        live: RefCell<HashMap<usize, isize>>,
    }
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            *self.live.borrow_mut().entry(layout.size()).or_default() += 1;
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            *self.live.borrow_mut().entry(layout.size()).or_default() -= 1;
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 1).unwrap()
    }

    #[test]
    fn a_freed_small_block_is_handed_out_again_to_its_size_class() {
        let blocks = SmallBlocks::new(Counting::default());
        unsafe {
            let a = blocks.alloc(layout(36));
            a.write_bytes(7, 36);
            blocks.dealloc(a, layout(36));
            // 33..=40 bytes share a class.
            let b = blocks.alloc(layout(40));
            assert_eq!(a, b);
            let c = blocks.alloc(layout(33));
            assert_ne!(c, b, "a block is handed out once");
            blocks.dealloc(b, layout(40));
            blocks.dealloc(c, layout(33));
        }
        assert_eq!(blocks.below.live.borrow()[&40], 2, "kept, not returned below");
    }

    #[test]
    fn each_class_keeps_at_most_its_share_and_returns_the_rest() {
        let blocks = SmallBlocks::new(Counting::default());
        let n = CLASS_BYTES / 1024 + 10;
        unsafe {
            let taken: Vec<*mut u8> = (0..n).map(|_| blocks.alloc(layout(1024))).collect();
            for p in taken {
                blocks.dealloc(p, layout(1024));
            }
        }
        assert_eq!(blocks.below.live.borrow()[&1024], (CLASS_BYTES / 1024) as isize);
    }

    #[test]
    fn large_and_overaligned_blocks_pass_through() {
        let blocks = SmallBlocks::new(Counting::default());
        unsafe {
            let big = blocks.alloc(layout(4096));
            let aligned = Layout::from_size_align(64, 64).unwrap();
            let a = blocks.alloc(aligned);
            assert_eq!(a as usize % 64, 0);
            blocks.dealloc(big, layout(4096));
            blocks.dealloc(a, aligned);
        }
        let live = blocks.below.live.borrow();
        assert_eq!((live[&4096], live[&64]), (0, 0));
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_sizes() {
        let blocks = SmallBlocks::new(Counting::default());
        unsafe {
            let mut p = blocks.alloc(layout(3));
            p.copy_from_nonoverlapping(b"abc".as_ptr(), 3);
            let mut size = 3;
            for new in [5, 8, 9, 700, 1024, 1025, 5000, 40, 2] {
                let q = blocks.realloc(p, layout(size), new);
                if class(layout(size)).map(|c| c.0) == class(layout(new)).map(|c| c.0) && new <= LARGEST {
                    assert_eq!(p, q, "{size} -> {new} stays in its block");
                }
                let kept = size.min(new).min(3);
                assert_eq!(std::slice::from_raw_parts(q, kept), &b"abc"[..kept], "{size} -> {new}");
                p = q;
                size = new;
            }
            blocks.dealloc(p, layout(size));
            let z = blocks.alloc_zeroed(layout(40));
            assert!(std::slice::from_raw_parts(z, 40).iter().all(|&b| b == 0), "a kept block is zeroed when asked");
            blocks.dealloc(z, layout(40));
        }
    }
}

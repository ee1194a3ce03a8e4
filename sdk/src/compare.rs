//! `memcmp` and `bcmp` for wasm32, eight bytes at a time.
//!
//! The toolchain's own (compiler-builtins, linked weakly) compares one byte per loop iteration. A
//! policy compares ids and keys all the time — hash-map probes, sorted ids, the plan's diff — and
//! Octavia's ids are 36 bytes: those comparisons were a sixth of a translation's time in the sandbox.
//! These strong definitions replace the weak ones at link time.

#[inline(always)]
unsafe fn word(p: *const u8) -> u64 {
    // SAFETY: the caller keeps `p .. p + 8` within the compared ranges; wasm loads need no alignment.
    unsafe { core::ptr::read_unaligned(p.cast::<u64>()) }
}

/// The sign of the first differing byte of two words read little-endian: a byte swap makes the first
/// byte the most significant, so the words compare as the bytes do.
#[inline(always)]
fn order(a: u64, b: u64) -> i32 {
    let (a, b) = (a.swap_bytes(), b.swap_bytes());
    if a < b {
        -1
    } else {
        1
    }
}

/// # Safety
/// `a` and `b` are readable for `n` bytes (the C contract).
unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        let (x, y) = unsafe { (word(a.add(i)), word(b.add(i))) };
        if x != y {
            return order(x, y);
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// `a` and `b` are readable for `n` bytes.
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract.
    unsafe { compare(a, b, n) }
}

/// # Safety
/// As [`memcmp`]; only equality is answered.
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract.
    unsafe { compare(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::compare as memcmp;

    fn sign(v: i32) -> i32 {
        v.signum()
    }

    #[test]
    fn orders_as_the_bytes_do_at_every_length_and_position() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            // SAFETY: both slices hold n bytes.
            assert_eq!(unsafe { memcmp(a.as_ptr(), a.as_ptr(), n) }, 0);
            for at in 0..n {
                for delta in [1u8, 0x80, 0xff] {
                    let mut b = a.clone();
                    b[at] = b[at].wrapping_add(delta);
                    let want = sign(a.cmp(&b) as i32);
                    // SAFETY: both hold n bytes.
                    let got = sign(unsafe { memcmp(a.as_ptr(), b.as_ptr(), n) });
                    assert_eq!(got, want, "n {n} at {at} delta {delta}");
                    // SAFETY: as above.
                    let back = sign(unsafe { memcmp(b.as_ptr(), a.as_ptr(), n) });
                    assert_eq!(back, -want, "n {n} at {at} delta {delta}, reversed");
                }
            }
        }
    }
}

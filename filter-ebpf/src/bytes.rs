//! Fixed-size comparisons written out so LLVM never emits a memcmp/bcmp call,
//! which the BPF target cannot link.

#[inline(always)]
pub fn eq6(a: &[u8; 6], b: &[u8; 6]) -> bool {
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5]))
        == 0
}

#[inline(always)]
pub fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut acc = 0u8;
    let mut i = 0;
    while i < 16 {
        acc |= a[i] ^ b[i];
        i += 1;
    }
    acc == 0
}

#[inline(always)]
pub fn is_zero16(a: &[u8; 16]) -> bool {
    let mut acc = 0u8;
    let mut i = 0;
    while i < 16 {
        acc |= a[i];
        i += 1;
    }
    acc == 0
}

/// `N` bytes of `b` starting at `OFF`, checked at compile time.
#[inline(always)]
pub fn sub<const L: usize, const OFF: usize, const N: usize>(b: &[u8; L]) -> [u8; N] {
    const { assert!(OFF + N <= L) };
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = b[OFF + i];
        i += 1;
    }
    out
}

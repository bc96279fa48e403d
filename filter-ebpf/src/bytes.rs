//! Fixed-size comparisons written out so LLVM never emits a memcmp/bcmp call,
//! which the BPF target cannot link.

#[inline(always)]
pub fn eq6(a: &[u8; 6], b: &[u8; 6]) -> bool {
    let x =
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]) ^ u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let y = u16::from_ne_bytes([a[4], a[5]]) ^ u16::from_ne_bytes([b[4], b[5]]);
    x == 0 && y == 0
}

/// The 16 bytes as two words: LLVM folds the byte reads into two loads
/// (misaligned loads are enabled, see filter-ebpf/.cargo/config.toml).
#[inline(always)]
fn words16(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

#[inline(always)]
pub fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a0, a1) = words16(a);
    let (b0, b1) = words16(b);
    (a0 ^ b0) | (a1 ^ b1) == 0
}

#[inline(always)]
pub fn is_zero16(a: &[u8; 16]) -> bool {
    let (a0, a1) = words16(a);
    a0 | a1 == 0
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

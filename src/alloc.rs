//! Allocation of the buffers whose sizes come from user input (image and grid sizes, batch
//! sizes), without ever aborting the process.
//!
//! Rust's infallible allocation (`vec![..]`, `Array::zeros`, `collect`) aborts when the
//! allocator refuses, and panics when a size overflows. Every buffer of the core whose
//! size a user controls is allocated here instead, under three rules, checked in order:
//!
//! 1. its byte size, computed with checked arithmetic, must fit `isize::MAX` (the most
//!    any array can address); otherwise `Unaddressable` (a `ValueError` in Python);
//! 2. it must fit the memory this process can have: physical RAM plus swap, or its
//!    cgroup's memory limit (a container's) where that is lower, where the platform says
//!    (Linux). Under Linux's memory overcommit the allocator grants far more than that and
//!    the process is killed when it touches the pages; this bound refuses such a buffer up
//!    front (`BeyondMemory`, a `MemoryError`). On macOS and Windows no bound is read
//!    (`memory_limit_elsewhere`): Windows commits no more than RAM plus page file, so its
//!    allocator refuses instead, and macOS grows its swap on demand, so RAM is no bound;
//! 3. the allocator may refuse it (`Refused`, a `MemoryError`).
//!
//! The errors here carry sizes only; `AllocError::named` turns one into a `UcagError`
//! naming the argument the size came from.

use crate::error::UcagError;
use std::alloc::Layout;
use std::fmt;
use std::sync::OnceLock;

/// Why a buffer could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// Its byte size overflows or exceeds `isize::MAX`.
    Unaddressable,
    /// It needs `bytes`, more than the `limit` of memory this process can have (`source`:
    /// "RAM + swap" or "cgroup limit").
    BeyondMemory {
        bytes: u128,
        limit: u128,
        source: &'static str,
    },
    /// The allocator refused `bytes`.
    Refused { bytes: u128 },
}

impl AllocError {
    /// The error as a `UcagError` naming `argument`; `what` says which buffer, e.g.
    /// "gives a result of shape [4096, 3, 16384, 16384] float32".
    pub fn named(self, argument: &'static str, what: impl fmt::Display) -> UcagError {
        match self {
            AllocError::Unaddressable => UcagError::value(
                argument,
                format!(
                    "{what}, too large to allocate: more than the {} bytes an array can address",
                    isize::MAX
                ),
            ),
            AllocError::BeyondMemory {
                bytes,
                limit,
                source,
            } => UcagError::memory(
                argument,
                format!(
                    "{what}, which needs {}, more than the memory this process can have ({}: \
                     {source})",
                    human_bytes(bytes),
                    short_bytes(limit)
                ),
            ),
            AllocError::Refused { bytes } => UcagError::memory(
                argument,
                format!("{what}, and {} could not be allocated", human_bytes(bytes)),
            ),
        }
    }
}

/// `bytes` for people, with the exact count: "12.0 TiB (13194139533312 bytes)".
pub fn human_bytes(bytes: u128) -> String {
    let short = short_bytes(bytes);
    if bytes < 1024 {
        short
    } else {
        format!("{short} ({bytes} bytes)")
    }
}

/// `bytes` for people: "12.0 TiB".
pub fn short_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The product of `shape` times `element_size`, exactly (None when it overflows u128).
pub fn byte_size(element_size: usize, shape: &[usize]) -> Option<u128> {
    shape
        .iter()
        .try_fold(element_size as u128, |acc, &d| acc.checked_mul(d as u128))
}

/// A bound on memory, in bytes, and where it comes from ("RAM + swap", "cgroup limit").
pub type MemoryLimit = Option<(u128, &'static str)>;

/// The most memory this process can have, in bytes, and where that bound comes from:
/// RAM plus swap, or the cgroup's limit where lower (Linux); None on other platforms
/// (`memory_limit_elsewhere`). Read once.
pub fn memory_limit() -> MemoryLimit {
    static LIMIT: OnceLock<MemoryLimit> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        #[cfg(target_os = "linux")]
        let limit = memory_limit_linux();
        #[cfg(not(target_os = "linux"))]
        let limit = memory_limit_elsewhere();
        limit
    })
}

#[cfg(target_os = "linux")]
fn memory_limit_linux() -> MemoryLimit {
    // SAFETY: sysinfo only writes the struct it is given; a zeroed one is a valid start.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    let machine = if unsafe { libc::sysinfo(&mut info) } == 0 {
        let unit = u128::from(info.mem_unit.max(1));
        Some((info.totalram as u128 + info.totalswap as u128) * unit).filter(|&t| t > 0)
    } else {
        None
    };
    // cgroup v2, then v1
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| parse_cgroup_limit(&std::fs::read_to_string(path).ok()?));
    tighter_limit(machine, cgroup)
}

/// A cgroup memory file's limit in bytes; None for "max" and v1's near-2^63 sentinel (no
/// limit) and for anything unreadable.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_cgroup_limit(text: &str) -> Option<u128> {
    text.trim()
        .parse::<u128>()
        .ok()
        .filter(|&limit| limit > 0 && limit < 1 << 62)
}

/// The lower of the machine's RAM + swap and the cgroup's limit, named by its source.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn tighter_limit(machine: Option<u128>, cgroup: Option<u128>) -> MemoryLimit {
    match (machine, cgroup) {
        (Some(m), Some(c)) if c < m => Some((c, "cgroup limit")),
        (None, Some(c)) => Some((c, "cgroup limit")),
        (Some(m), _) => Some((m, "RAM + swap")),
        (None, None) => None,
    }
}

/// The bound on platforms other than Linux (macOS, Windows): none. Windows commits no more
/// than RAM plus its page file, so a buffer beyond that is refused by the allocator (rule
/// 3), not granted and killed later; macOS grows its swap files on demand, so its RAM is no
/// bound. Compiled everywhere so that Linux's tests exercise it.
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn memory_limit_elsewhere() -> MemoryLimit {
    None
}

/// Checks rules 1 and 2 for `len` elements of `T`; returns the byte size.
pub fn check_elements<T>(len: usize) -> Result<usize, AllocError> {
    check_shape(std::mem::size_of::<T>(), &[len])
}

/// Checks rules 1 and 2 for an array of `shape` with elements of `element_size` bytes;
/// returns the byte size. For a buffer another library allocates (libtorch).
pub fn check_shape(element_size: usize, shape: &[usize]) -> Result<usize, AllocError> {
    check_shape_within(memory_limit(), element_size, shape)
}

/// `check_shape` against the bound `limit` (rule 2 is skipped where it is None).
fn check_shape_within(
    limit: MemoryLimit,
    element_size: usize,
    shape: &[usize],
) -> Result<usize, AllocError> {
    let bytes = byte_size(element_size, shape)
        .filter(|&b| b <= isize::MAX as u128)
        .ok_or(AllocError::Unaddressable)?;
    // Every element count must be addressable too (it is, when the bytes are, unless
    // elements are zero-sized).
    byte_size(1, shape)
        .filter(|&n| n <= isize::MAX as u128)
        .ok_or(AllocError::Unaddressable)?;
    if let Some((limit, source)) = limit {
        if bytes > limit {
            return Err(AllocError::BeyondMemory {
                bytes,
                limit,
                source,
            });
        }
    }
    Ok(bytes as usize)
}

/// An empty vector with room for exactly `len` elements, or an error.
pub fn try_with_capacity<T>(len: usize) -> Result<Vec<T>, AllocError> {
    let bytes = check_elements::<T>(len)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| AllocError::Refused {
        bytes: bytes as u128,
    })?;
    Ok(v)
}

/// The `len` items of `items` as a vector, allocated fallibly (`items` must yield `len`
/// items; extra ones are not taken).
pub fn try_collect<T>(
    len: usize,
    items: impl IntoIterator<Item = T>,
) -> Result<Vec<T>, AllocError> {
    let mut v = try_with_capacity(len)?;
    // Within the reserved capacity: `extend` never reallocates here.
    v.extend(items.into_iter().take(len));
    Ok(v)
}

/// Element types whose all-zero bit pattern is the value zero, so that zeroed memory is a
/// valid, zero-filled buffer of them.
///
/// # Safety
/// Implement only for types for which every all-zero byte pattern is a valid value.
pub unsafe trait ZeroBits: Copy {}
// SAFETY: +0.0 and 0 are all-zero bits.
unsafe impl ZeroBits for f32 {}
unsafe impl ZeroBits for f64 {}
unsafe impl ZeroBits for i32 {}
unsafe impl ZeroBits for u32 {}

/// `len` zeros, allocated fallibly. Zeroed memory from the allocator (calloc): as lazy as
/// `vec![0.0; len]` (untouched pages cost nothing), unlike reserving and then filling.
pub fn try_zeros<T: ZeroBits>(len: usize) -> Result<Vec<T>, AllocError> {
    let bytes = check_elements::<T>(len)?;
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<T>(len).map_err(|_| AllocError::Unaddressable)?;
    // SAFETY: the layout has a non-zero size (checked just above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(AllocError::Refused {
            bytes: bytes as u128,
        });
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of exactly `len`
    // elements of T (so capacity `len`, T's alignment), and its `len` elements are all-zero
    // bytes, which are valid T values (`ZeroBits`).
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_checked() {
        assert_eq!(byte_size(4, &[2, 3, 5]), Some(120));
        assert_eq!(byte_size(8, &[usize::MAX, usize::MAX, 2]), None);
        assert_eq!(
            check_shape(4, &[1 << 31, 1 << 31]),
            Err(AllocError::Unaddressable)
        );
        assert_eq!(
            check_shape(4, &[usize::MAX]),
            Err(AllocError::Unaddressable)
        );
        assert_eq!(check_shape(4, &[3, 0, 7]), Ok(0));
        assert_eq!(check_shape(8, &[10, 10]), Ok(800));
    }

    #[test]
    fn buffers_beyond_memory_are_errors_not_aborts() {
        // 2^50 bytes: more than any machine's RAM and, on x86-64, its address space, so
        // the allocator refuses it even under overcommit where no limit is known.
        let len = 1usize << 48;
        let err = try_zeros::<f32>(len).unwrap_err();
        assert!(matches!(
            err,
            AllocError::BeyondMemory { .. } | AllocError::Refused { .. }
        ));
        assert!(try_with_capacity::<u64>(len >> 1).is_err());
        assert!(try_collect(len, std::iter::repeat(0u32)).is_err());
        let named = err.named("images", "gives a result of shape [1, 2, 3]");
        assert_eq!(named.argument(), "images");
        assert!(
            named
                .to_string()
                .starts_with("images: gives a result of shape [1, 2, 3], "),
            "{named}"
        );
        let named = AllocError::Unaddressable.named("maps", "gives a result");
        assert!(matches!(named, UcagError::Value { .. }));
        assert!(
            named.to_string().contains("too large to allocate"),
            "{named}"
        );
    }

    #[test]
    fn the_memory_limit_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            let (limit, source) = memory_limit().expect("sysinfo reports RAM");
            assert!(limit >= 1 << 20 && ["RAM + swap", "cgroup limit"].contains(&source));
            let err = check_elements::<u8>(limit as usize + 1).unwrap_err();
            assert_eq!(
                err,
                AllocError::BeyondMemory {
                    bytes: limit + 1,
                    limit,
                    source
                }
            );
            let message = err.named("maps", "gives a result").to_string();
            assert!(
                message.contains("more than the memory this process can have ("),
                "{message}"
            );
        }
    }

    #[test]
    fn cgroup_files_and_the_tighter_bound() {
        assert_eq!(parse_cgroup_limit("8589934592\n"), Some(8 << 30));
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712"), None);
        assert_eq!(parse_cgroup_limit("0"), None);
        assert_eq!(
            tighter_limit(Some(16 << 30), Some(4 << 30)),
            Some((4 << 30, "cgroup limit"))
        );
        assert_eq!(
            tighter_limit(Some(16 << 30), Some(32 << 30)),
            Some((16 << 30, "RAM + swap"))
        );
        assert_eq!(tighter_limit(None, Some(1)), Some((1, "cgroup limit")));
        assert_eq!(tighter_limit(None, None), None);
    }

    #[test]
    fn elsewhere_no_bound_is_read_and_the_allocator_refuses() {
        // macOS and Windows: sizes are still checked for overflow and addressability, any
        // addressable size passes rule 2, and a buffer no allocator grants is an error.
        let limit = memory_limit_elsewhere();
        assert_eq!(limit, None);
        assert_eq!(check_shape_within(limit, 4, &[1 << 20]), Ok(4 << 20));
        assert_eq!(
            check_shape_within(limit, 4, &[usize::MAX, 2]),
            Err(AllocError::Unaddressable)
        );
        let huge = 1usize << 60;
        assert_eq!(check_shape_within(limit, 1, &[huge]), Ok(huge));
        // 2^60 bytes: beyond any 64-bit machine's virtual address space (57 bits with
        // 5-level paging), so refused even under overcommit (rule 3).
        // (black_box: LLVM may otherwise drop an unused allocation and call it a success)
        let mut v: Vec<u8> = Vec::new();
        let refused = v.try_reserve_exact(huge).is_err();
        std::hint::black_box(&v);
        assert!(refused);
        // the same size with Linux's bound is refused up front, naming that bound
        if let Some((bound, source)) = memory_limit() {
            assert_eq!(
                check_shape_within(memory_limit(), 1, &[huge]),
                Err(AllocError::BeyondMemory {
                    bytes: huge as u128,
                    limit: bound,
                    source
                })
            );
        }
    }

    #[test]
    fn zeros_and_collections_that_fit() {
        let z = try_zeros::<f64>(1000).unwrap();
        assert_eq!(z.len(), 1000);
        assert!(z.iter().all(|&v| v == 0.0));
        assert!(try_zeros::<i32>(0).unwrap().is_empty());
        assert_eq!(try_collect(3, 10u32..).unwrap(), vec![10, 11, 12]);
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB (3221225472 bytes)");
        assert_eq!(short_bytes(3 << 30), "3.0 GiB");
    }
}

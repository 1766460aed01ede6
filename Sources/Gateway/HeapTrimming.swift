import CMalloc

/// How much free memory glibc's allocator may keep at the top of a heap before it gives it back to the kernel.
///
/// glibc trims a heap whenever a `free` leaves more than `M_TRIM_THRESHOLD` (128 KiB by default, raised only by
/// large `mmap`ed blocks) free at its top: `madvise(MADV_DONTNEED)` for a thread's heap, `brk` for the main one.
/// The gateway's per-commit churn (SQLite's statement and page buffers, a claim's records, the high-water mark's
/// text) crossed that line about every other record: a system call, then page faults and zeroed pages when the
/// memory was used again a moment later. Keeping up to ``gatewayThreshold`` at the top of each heap removes that
/// churn; the memory it may keep is a small share of the gateway's resident set.
public enum HeapTrimming {
    /// The threshold the gateway runs with.
    public static let gatewayThreshold = 512 * 1024

    /// Sets glibc's `M_TRIM_THRESHOLD` for the whole process; true if the allocator took it. Call once, early in
    /// the process. The corresponding C function is `mallopt`.
    @discardableResult
    public static func setThreshold(bytes: Int = gatewayThreshold) -> Bool {
        mallopt(CMalloc_trimThresholdParameter(), Int32(clamping: bytes)) == 1
    }
}

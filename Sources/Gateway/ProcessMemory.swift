import CMalloc
#if canImport(Glibc)
import Glibc
#endif

/// Why a call about the gateway process's own memory failed: the C call, its errno (0 where the call sets
/// none) and what it was called on.
public struct ProcessMemoryError: Error, Hashable, Sendable, CustomStringConvertible {
    public let function: String
    public let code: Int32
    public let detail: String

    public init(function: String, code: Int32, detail: String) {
        self.function = function
        self.code = code
        self.detail = detail
    }

    public var description: String {
        let reason = code == 0 ? "failed" : "failed: \(String(cString: strerror(code))) (errno \(code))"
        return "\(function) \(detail) \(reason)"
    }
}

/// The resident set of this process, in KiB, from `/proc/self/status`.
public struct ResidentSet: Hashable, Sendable {
    /// `VmRSS`: pages mapped now.
    public var current: Int
    /// `VmHWM`: the most ever mapped at once.
    public var peak: Int

    public init(current: Int, peak: Int) {
        self.current = current
        self.peak = peak
    }

    /// `current` in MiB with one decimal, for logs.
    public var currentMiB: String { Self.mib(current) }
    /// `peak` in MiB with one decimal, for logs.
    public var peakMiB: String { Self.mib(peak) }
    static func mib(_ kib: Int) -> String { "\(kib * 10 / 1024 / 10).\(kib * 10 / 1024 % 10)" }
}

/// One line of `/proc/self/maps`.
public struct MemoryMapping: Hashable, Sendable {
    public var start: UInt
    public var end: UInt
    /// `r`, `w`, `x`, then `p` (private) or `s` (shared), as the kernel writes them.
    public var permissions: String
    /// The file mapped, empty for anonymous memory.
    public var path: String

    public var length: Int { Int(end - start) }
    public var isWritable: Bool { permissions.contains("w") }
    public var isExecutable: Bool { permissions.contains("x") }

    /// Parses one `/proc/PID/maps` line (`start-end perms offset dev inode path`), nil when malformed.
    public init?(mapsLine line: Substring) {
        let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard fields.count >= 5 else { return nil }
        let bounds = fields[0].split(separator: "-")
        guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start else { return nil }
        self.start = start
        self.end = end
        permissions = String(fields[1])
        path = fields.count == 6 ? String(fields[5].drop { $0 == " " }) : ""
    }

    public init(start: UInt, end: UInt, permissions: String, path: String) {
        self.start = start
        self.end = end
        self.permissions = permissions
        self.path = path
    }
}

/// What ``ProcessMemory/pageOutExecutable()`` did.
public struct PageOutReport: Hashable, Sendable, CustomStringConvertible {
    /// The executable's mappings advised, and their total length in bytes.
    public var mappings: Int
    public var bytes: Int
    /// The resident set just before and just after.
    public var before: ResidentSet
    public var after: ResidentSet

    public var description: String {
        "RSS \(before.currentMiB) → \(after.currentMiB) MiB: \(mappings) mappings of the executable (\(bytes >> 20) MiB) paged out"
    }
}

/// The gateway process's own memory: glibc's malloc arenas, the heap left free by start-up, and the pages of
/// the executable that only start-up read (the loader's relocations and symbol tables, config parsing,
/// argument parsing). Linux only; every call is a blocking system call, so run it with ``runBlocking(_:)``.
public enum ProcessMemory {
    /// Caps how many malloc arenas glibc makes. By default it adds arenas as threads contend for the heap, up to
    /// eight per core, each keeping its own free memory; the gateway's few threads allocate little.
    /// The corresponding C function is `mallopt(M_ARENA_MAX, count)` (it returns 0 on failure and sets no errno).
    public static func limitMallocArenas(to count: Int32) throws(ProcessMemoryError) {
        guard mallopt(CMalloc_arenaMaxParameter(), count) == 1 else {
            throw ProcessMemoryError(function: "mallopt", code: 0, detail: "(M_ARENA_MAX, \(count))")
        }
    }

    /// Returns the heap's free memory to the kernel: the top of every arena and the whole free pages inside
    /// them. Returns whether any memory was released. The corresponding C function is `malloc_trim(0)`.
    @discardableResult
    public static func trimMallocHeap() -> Bool {
        malloc_trim(0) == 1
    }

    /// `VmRSS` and `VmHWM` of `/proc/self/status`.
    public static func residentSet() throws(ProcessMemoryError) -> ResidentSet {
        let status = try readProcFile("/proc/self/status")
        func kib(_ key: String) -> Int? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return nil }
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        }
        guard let current = kib("VmRSS"), let peak = kib("VmHWM") else {
            throw ProcessMemoryError(function: "read", code: 0, detail: "/proc/self/status (no VmRSS or VmHWM line)")
        }
        return ResidentSet(current: current, peak: peak)
    }

    /// The executable's clean, file-backed mappings in `maps` (the text of `/proc/PID/maps`): every mapping
    /// of `executable` from its first one up to the end of its code, without the writable ones. What follows
    /// the code (relocated read-only data, `.data`) is private memory the loader wrote to, not the file's pages.
    public static func cleanExecutableMappings(maps: String, executable: String) -> [MemoryMapping] {
        let own = maps.split(separator: "\n").compactMap { MemoryMapping(mapsLine: $0) }.filter { $0.path == executable }
        guard let codeEnd = own.filter(\.isExecutable).map(\.end).max() else { return [] }
        return own.filter { $0.end <= codeEnd && !$0.isWritable }
    }

    /// Asks the kernel to reclaim the executable's clean pages now: pages start-up alone used (the loader's
    /// relocations and symbol tables, argument and config parsing) leave memory, and those still in use fault
    /// back in on their next use. Pages another process maps too are left alone by the kernel. This lowers
    /// the resident set from here on, not its peak (`VmHWM`). Needs Linux 5.4 (`EINVAL` before).
    /// The corresponding C functions are `readlink("/proc/self/exe")` and `madvise(MADV_PAGEOUT)`, once per
    /// mapping of ``cleanExecutableMappings(maps:executable:)``.
    public static func pageOutExecutable() throws(ProcessMemoryError) -> PageOutReport {
        let executable = try readLink("/proc/self/exe")
        let mappings = cleanExecutableMappings(maps: try readProcFile("/proc/self/maps"), executable: executable)
        let before = try residentSet()
        for mapping in mappings {
            guard madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), mapping.length, MADV_PAGEOUT) == 0 else {
                let code = errno
                throw ProcessMemoryError(function: "madvise", code: code, detail: "(MADV_PAGEOUT) of \(executable) \(mapping.permissions)")
            }
        }
        return PageOutReport(mappings: mappings.count, bytes: mappings.reduce(0) { $0 + $1.length }, before: before, after: try residentSet())
    }

    /// The whole of a `/proc` file (whose size `stat` reports as 0). The corresponding C calls are `open` and `read`.
    static func readProcFile(_ path: String) throws(ProcessMemoryError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ProcessMemoryError(function: "open", code: errno, detail: path) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw ProcessMemoryError(function: "read", code: errno, detail: path)
            }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Where a symbolic link points. The corresponding C function is `readlink`.
    static func readLink(_ path: String) throws(ProcessMemoryError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count - 1) }
        guard count >= 0 else { throw ProcessMemoryError(function: "readlink", code: errno, detail: path) }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

import Gateway
import Logging
import Testing

/// The gateway's own memory: malloc arenas and trimming, and paging out the executable's clean pages, on this
/// test process (its executable is the test bundle).
@Suite(.timeLimit(.minutes(5))) struct ProcessMemoryTests {
    static let maps = """
        55d0c0000000-55d0c04c4000 r--p 00000000 fe:01 1234 /usr/bin/metergate
        55d0c04c4000-55d0c1925000 r-xp 004c3000 fe:01 1234 /usr/bin/metergate
        55d0c1926000-55d0c19e8000 r--p 01924000 fe:01 1234 /usr/bin/metergate
        55d0c19e8000-55d0c1a00000 rw-p 019e5000 fe:01 1234 /usr/bin/metergate
        55d0c3000000-55d0c3200000 rw-p 00000000 00:00 0                          [heap]
        7f0000000000-7f0000028000 r--p 00000000 fe:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
        7f0000028000-7f000019d000 r-xp 00028000 fe:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
        7f00001a0000-7f00001a1000 rw-p 00000000 00:00 0
        7fff00000000-7fff00021000 rw-p 00000000 00:00 0                          [stack]
        """

    @Test func theCleanMappingsAreTheExecutablesUpToItsCode() {
        let clean = ProcessMemory.cleanExecutableMappings(maps: Self.maps, executable: "/usr/bin/metergate")
        #expect(clean.map(\.permissions) == ["r--p", "r-xp"])
        #expect(clean.first?.start == 0x55d0_c000_0000)
        #expect(clean.last?.end == 0x55d0_c192_5000)
        #expect(clean.map(\.length).reduce(0, +) == 0x192_5000)
        // Relocated read-only data after the code, .data, the heap, other files: none of them.
        #expect(ProcessMemory.cleanExecutableMappings(maps: Self.maps, executable: "/usr/bin/other").isEmpty)
    }

    @Test func mapsLinesParse() throws {
        let named = try #require(MemoryMapping(mapsLine: "7f0000028000-7f000019d000 r-xp 00028000 fe:01 99 /usr/lib/a b.so"))
        #expect(named.path == "/usr/lib/a b.so" && named.isExecutable && !named.isWritable && named.length == 0x175000)
        let anonymous = try #require(MemoryMapping(mapsLine: "7f00001a0000-7f00001a1000 rw-p 00000000 00:00 0"))
        #expect(anonymous.path.isEmpty && anonymous.isWritable)
        #expect(MemoryMapping(mapsLine: "not a mapping") == nil)
        #expect(MemoryMapping(mapsLine: "2000-1000 r--p 00000000 00:00 0") == nil)
    }

    @Test func residentSetIsReadFromProc() throws {
        let resident = try ProcessMemory.residentSet()
        #expect(resident.current > 0 && resident.peak >= resident.current)
        #expect(ResidentSet(current: 25_600, peak: 26_000).currentMiB == "25.0")
        #expect(ResidentSet(current: 1_023, peak: 1_023).peakMiB == "0.9")
    }

    @Test func arenasAreLimitedAndTheHeapTrims() throws {
        #expect(throws: Never.self) { try ProcessMemory.limitMallocArenas(to: 2) }
        // 50 MiB of small blocks in the heap, one more above them so that free cannot shrink the heap: their pages
        // stay resident after free, and only malloc_trim gives them back.
        let blocks = (0..<100_000).map { _ in UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16) }
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 1, count: 512) }
        let pin = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16)
        defer { pin.deallocate() }
        for block in blocks { block.deallocate() }
        let before = try ProcessMemory.residentSet()
        #expect(ProcessMemory.trimMallocHeap(), "malloc_trim found nothing to give back")
        let after = try ProcessMemory.residentSet()
        #expect(after.current + 16 * 1024 < before.current, "resident \(before.currentMiB) MiB before the trim, \(after.currentMiB) after")
    }

    @Test func theExecutableIsPagedOutAndReportsWhatItReclaimed() async throws {
        let report = try ProcessMemory.pageOutExecutable()
        #expect(report.mappings >= 1)
        #expect(report.bytes > 0)
        #expect(report.before.current > 0 && report.after.current > 0)
        #expect(report.description.contains("paged out"))
        // The code paged out faults back in: this test goes on running.
        let again = await StartupMemoryService.release(pageOutExecutable: true)
        let released = try again.get()
        #expect(released.pageOut != nil)
        #expect(released.description.contains("after malloc_trim"))
        let trimOnly = try await StartupMemoryService.release(pageOutExecutable: false).get()
        #expect(trimOnly.pageOut == nil)
    }
}

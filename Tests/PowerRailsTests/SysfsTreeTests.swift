import PowerRails
import TestSupport
import Testing
import Foundation

@Suite(.timeLimit(.minutes(5))) struct SysfsTreeTests {
    @Test func readsIntegersUnderARootPath() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.file("sys/class/powercap/intel-rapl:0"), withIntermediateDirectories: true)
        dir.write("sys/class/powercap/intel-rapl:0/energy_uj", "123456789\n")
        dir.write("sys/class/powercap/intel-rapl:0/name", "package-0\n")
        let tree = SysfsTree(root: dir.path)
        #expect(tree.integer("sys/class/powercap/intel-rapl:0/energy_uj") == 123_456_789)
        #expect(tree.text("/sys/class/powercap/intel-rapl:0/name") == "package-0")
        #expect(tree.list("sys/class/powercap") == ["intel-rapl:0"])
        #expect(tree.integer("sys/class/powercap/missing") == nil)
    }
}

@testable import Gateway
import Testing

@Suite(.timeLimit(.minutes(5))) struct HeapTrimmingTests {
    /// `metergate run` sets glibc's trim threshold at start; the allocator must take it (mallopt returns 1).
    @Test func glibcTakesTheGatewaysTrimThreshold() {
        #if os(Linux)
        #expect(HeapTrimming.setThreshold())
        #expect(HeapTrimming.setThreshold(bytes: HeapTrimming.gatewayThreshold))
        #endif
    }
}

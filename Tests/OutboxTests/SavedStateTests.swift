import Foundation
import MeterCore
import Outbox
import MeterGateTesting
import TestSupport
import Testing

/// Accounting state saved in the same transaction as the records it produced.
@Suite(.timeLimit(.minutes(5))) struct SavedStateTests {
    @Test(arguments: StoreKind.allCases)
    func stateIsSavedWithTheRecordsAndAlone(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir)
        #expect(try await store.savedState("accounting/m1") == nil)
        _ = try await store.append([AppendRequest(meter: "m1", build: chainedRecord("m1"))], saving: ["accounting/m1": Array("one".utf8)])
        #expect(try await store.savedState("accounting/m1") == Array("one".utf8))
        _ = try await store.append([], saving: ["accounting/m1": Array("two".utf8)])
        #expect(try await store.savedState("accounting/m1") == Array("two".utf8))
        #expect(try await store.stats().pending == 1)
    }

    @Test func aFailedAppendSavesNoStateAndAReopenKeepsTheLastSaved() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        do {
            let store = try await StoreKind.sqlite.make(dir)
            _ = try await store.append([AppendRequest(meter: "m1", build: chainedRecord("m1"))], saving: ["k": [1]])
            struct Refused: Error {}
            await #expect(throws: OutboxError.self) {
                _ = try await store.append([AppendRequest(meter: "m1", build: { _ in throw Refused() })], saving: ["k": [2]])
            }
            #expect(try await store.savedState("k") == [1])
        }
        let reopened = try await StoreKind.sqlite.make(dir)
        #expect(try await reopened.savedState("k") == [1])
        #expect(try await reopened.stats().streams.first?.lastSeq == 1)
    }
}

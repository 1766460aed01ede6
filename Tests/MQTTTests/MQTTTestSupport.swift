import MeterCore
import Crypto
import Foundation
import MQTT
import Outbox
import Synchronization

import TestSupport
import Testing

/// Collects a client's events in order, on a task of its own.
final class EventLog: Sendable {
    private let events = Mutex<[MQTTEvent]>([])
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(_ client: MQTTClient) {
        let t = Task { [self] in
            for await event in client.events { self.events.withLock { $0.append(event) } }
        }
        task.withLock { $0 = t }
    }

    var all: [MQTTEvent] { events.withLock { $0 } }

    var messages: [MQTTMessage] {
        all.compactMap { if case .message(let m) = $0 { return m } else { return nil } }
    }

    var connectedSessions: [MQTTSession] {
        all.compactMap { if case .connected(let s) = $0 { return s } else { return nil } }
    }

    var subscribedSessions: [UInt64] {
        all.compactMap { if case .subscribed(let s, _, _) = $0 { return s } else { return nil } }
    }

    var failures: [MosquittoError] {
        all.compactMap { if case .connectFailed(let e, _) = $0 { return e } else { return nil } }
    }
}

/// Polls `condition` without blocking a thread of the cooperative pool; true when it held in time.
func eventually(timeout: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// A fast back-off for tests on loopback.
let testBackoff = BackoffPolicy(initial: .milliseconds(100), maximum: .milliseconds(500), multiplier: 2, jitter: 0.5)

func clientConfiguration(_ broker: MosquittoBroker, id: String, username: String? = nil, password: String? = nil,
                         tls: MQTTTLSConfiguration? = nil, topics: MeterGateTopics? = nil, window: Int = 64) -> MQTTClientConfiguration {
    MQTTClientConfiguration(host: "127.0.0.1", port: broker.port, clientID: id, username: username, password: password, tls: tls,
                            keepaliveSeconds: 5, will: topics?.offline, birthMessages: topics.map { [$0.online] } ?? [],
                            farewellMessages: topics.map { [$0.offline] } ?? [], backoff: testBackoff,
                            connectTimeout: .seconds(5), maxInflight: window)
}


import ArgumentParser
import Foundation
import Logging
import MQTT
import MeterCore
import Signing

/// `metergate tail`: the settlement side's first look: subscribe, verify each reading, print a line.
struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe to a gateway's readings, verify each one, and print a line per reading.",
        discussion: """
            Trust: --trust FILE (per gateway, from commissioning; rotations signed by a trusted key are followed and \
            saved) and/or --key files (trusted for every gateway); one is required. A record signed by any other key fails.
            Each line: interval end (UTC), gateway/meter, seq, the interval's imported (in) and exported (out) kWh, the \
            cumulative imported kWh, average W,
            quality, and ✓ (signature and chain verified) or ✗ with the reason. A seq gap, a broken chain link or a
            fork is reported as it is seen; a repeated seq (at-least-once delivery, a replay) is marked "dup".
            Exit codes: 0 when stopped (Ctrl-C) or --count reached with every reading verified, 1 when any reading
            failed verification, 2 on usage errors.
            """)

    @OptionGroup var connection: BrokerOptions
    @OptionGroup var trusted: TrustOptions

    @Option(help: "The gateway id to follow (+ for all).")
    var gateway: String = "+"

    @Option(help: "The meter id to follow (+ for all).")
    var meter: String = "+"

    @Flag(help: "One JSON object per reading instead of a text line.")
    var json = false

    @Option(help: "Stop after this many readings.")
    var count: Int?

    @Option(help: "Give up after this many seconds (with --count: fail if fewer arrived).")
    var timeout: Int?

    /// Readings held until their gateway's keys topic has been read (a rotation may be announced there).
    static let maximumWaiting = 1000
    static let maximumWaitingBytes = 8 << 20

    func run() async throws {
        LoggingSystem.bootstrap { label in var h = StreamLogHandler.standardError(label: label); h.logLevel = .error; return h }
        for id in [gateway, meter] where id != "+" {
            if let problem = Identifier.problem(with: id) { throw Failure.usage("'\(id)' \(problem)") }
        }
        let (store, keys) = try trusted.load(command: "tail")
        var trust = TrustFollower(store: store, keys: keys, path: trusted.trust)
        let client = MQTTClient(configuration: try connection.clientConfiguration(
            clientID: "metergate-tail-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            // A person is watching: come back quickly after an outage.
            backoff: BackoffPolicy(initial: .milliseconds(200), maximum: .seconds(2))), logger: Logger(label: "tail"))
        // Keys first: the broker sends a subscription's retained messages before it reads the next SUBSCRIBE, so a
        // rotation announced there is known before the readings signed with the new key.
        if trust.followsAnnouncements { client.subscribe("metergate/v1/\(gateway)/keys") }
        let readings = "metergate/v1/\(gateway)/\(meter)/reading"
        client.subscribe(readings)
        client.start()
        let filters = trust.followsAnnouncements ? 2 : 1
        var acknowledged = 0

        var tracker = ChainTracker()
        var seen = 0
        var failures = 0
        var waiting: [MQTTMessage] = []      // readings signed by a key not trusted before their gateway's keys arrived
        var waitingBytes = 0
        let deadline = timeout.map { ContinuousClock.now + .seconds($0) }
        let events = client.events
        let timer = Task {
            if let deadline { try? await Task.sleep(until: deadline); await client.shutdown() }
        }
        defer { timer.cancel() }
        var down = false      // report an outage once, not every retry
        func take(_ message: MQTTMessage) {
            let verdict = trust.verifier.verify(message.payload)
            if trust.followsAnnouncements, case .failure(let failure) = verdict, failure.kind == .unknownKey,
               let claimed = failure.claimed, !trust.announced.contains(claimed.gateway.rawValue) {
                if waiting.count >= Self.maximumWaiting || waitingBytes + message.payload.count > Self.maximumWaitingBytes {
                    let oldest = waiting.removeFirst()
                    waitingBytes -= oldest.payload.count
                    failures += handle(oldest, verdict: trust.verifier.verify(oldest.payload), tracker: &tracker) ? 0 : 1
                    seen += 1
                }
                waiting.append(message)
                waitingBytes += message.payload.count
                return
            }
            failures += handle(message, verdict: verdict, tracker: &tracker) ? 0 : 1
            seen += 1
        }
        loop: for await event in events {
            switch event {
            case .connectFailed(let error, _):
                if !down { FileHandle.standardError.write(Data("metergate tail: broker unreachable, retrying: \(error)\n".utf8)) }
                down = true
            case .connected:
                if down { FileHandle.standardError.write(Data("metergate tail: connected again\n".utf8)) }
                down = false
            case .subscribed(_, _, let granted):
                // Readings published before this line are not delivered to tail (no stored session): say when it listens.
                acknowledged += 1
                if granted.contains(where: { $0 >= 0x80 }) {
                    FileHandle.standardError.write(Data("metergate tail: the broker refused a subscription (reason code \(granted)); check its ACL\n".utf8))
                } else if acknowledged == filters {
                    FileHandle.standardError.write(Data("metergate tail: listening on \(readings)\n".utf8))
                }
            case .message(let message) where message.topic.hasSuffix("/keys"):
                let parts = message.topic.split(separator: "/")
                guard parts.count == 4 else { continue }
                let outcome = trust.announcement(message.text, gateway: String(parts[2]), nowMillis: Int64(Date().timeIntervalSince1970 * 1000))
                for entry in outcome.learned {
                    if case .rotation(let statement) = entry.origin {
                        FileHandle.standardError.write(Data("metergate tail: \(parts[2]): trusting \(entry.key.keyID), rotated to from \(statement.previousKeyID)\n".utf8))
                    }
                }
                for reason in outcome.ignored { FileHandle.standardError.write(Data("metergate tail: \(message.topic): \(reason)\n".utf8)) }
                if let problem = outcome.saveError { FileHandle.standardError.write(Data("metergate tail: could not save the trust store: \(problem)\n".utf8)) }
                let pending = waiting
                waiting.removeAll()
                waitingBytes = 0
                for message in pending { take(message) }
            case .message(let message):
                take(message)
            default:
                break
            }
            if let count, seen >= count { break loop }
        }
        await client.shutdown()
        for message in waiting where count.map({ seen < $0 }) ?? true {
            failures += handle(message, verdict: trust.verifier.verify(message.payload), tracker: &tracker) ? 0 : 1
            seen += 1
        }
        if let count, seen < count {
            throw Failure.run("\(seen) of \(count) readings arrived before the timeout")
        }
        if failures > 0 { throw Failure.run("\(failures) reading(s) failed verification") }
    }

    /// Verifies and prints one reading; false when it failed.
    private func handle(_ message: MQTTMessage, verdict: Result<VerifiedRecord, RecordFailure>, tracker: inout ChainTracker) -> Bool {
        switch verdict {
        case .failure(let failure):
            emit(json ? "{\"topic\":\"\(message.topic)\",\"verified\":false,\"reason\":\"\(failure.description.replacingOccurrences(of: "\"", with: "'"))\"}"
                       : "✗ \(message.topic): \(failure)")
            return false
        case .success(let verified):
            let r = verified.record
            let chain = tracker.observe(verified)
            let ok = chain.problem == nil
            if json {
                var fields = [
                    "\"gateway\":\"\(r.gateway)\"", "\"meter\":\"\(r.meter)\"", "\"epoch\":\"\(r.epoch)\"", "\"seq\":\(r.seq)",
                    "\"start\":\(r.startMillis)", "\"end\":\(r.endMillis)", "\"import_delta_mwh\":\(r.importDelta.rawValue)",
                    "\"import_total_mwh\":\(r.importTotal.rawValue)", "\"export_delta_mwh\":\(r.exportDelta.rawValue)",
                    "\"export_total_mwh\":\(r.exportTotal.rawValue)", "\"average_mw\":\(r.averageMilliwatts)",
                    "\"quality\":\"\(r.quality.rawValue)\"", "\"verified\":\(ok)", "\"duplicate\":\(chain.duplicate)",
                ]
                if let problem = chain.problem { fields.append("\"chain\":\"\(problem)\"") }
                if let clock = r.clock { fields.append("\"clock\":\"\(clock.rawValue)\"") }
                fields.append("\"source\":\(String(decoding: JSONValue.string(r.sourceID).orderedBytes, as: UTF8.self))")
                if let origin = r.sourceIdentity { fields.append("\"source_identity\":\"\(origin.rawValue)\"") }
                if let replaced = r.replacement {
                    fields.append("\"replaced\":{\"old\":\(String(decoding: JSONValue.string(replaced.old).orderedBytes, as: UTF8.self)),\"new\":\(String(decoding: JSONValue.string(replaced.new).orderedBytes, as: UTF8.self))}")
                }
                if let lost = r.storeLost {
                    fields.append("\"store_lost\":[\(lost.seqs.lowerBound),\(lost.seqs.upperBound)]")
                    fields.append("\"store_lost_cause\":\"\(lost.cause.rawValue)\"")
                }
                emit("{" + fields.joined(separator: ",") + "}")
            } else {
                let end = Date(timeIntervalSince1970: Double(r.endMillis) / 1000)
                let mark = ok ? "✓" : "✗ \(chain.problem!)"
                let numbers = String(format: "%10.3f kWh in %8.3f kWh out  total %12.3f kWh  %9.0f W", r.importDelta.kilowattHours,
                                     r.exportDelta.kilowattHours, r.importTotal.kilowattHours, Double(r.averageMilliwatts) / 1000)
                emit("\(Self.utc.string(from: end))  \(r.gateway)/\(r.meter)  seq \(r.seq)  \(numbers)  "
                     + "\(r.quality.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(mark)\(chain.duplicate ? " dup" : "")"
                     + (r.clock == .unsynced ? "  clock unsynced" : "")
                     + (r.sourceIdentity == .mismatch ? "  NOT the commissioned meter (\(r.sourceID))" : "")
                     + (r.replacement.map { "  meter replaced \($0.old) → \($0.new) (signed)" } ?? "")
                     + (r.storeLost.map { "  \($0.cause == .quota ? "quota dropped" : "store lost") seq \($0.seqs.lowerBound)…\($0.seqs.upperBound) (signed)" } ?? ""))
            }
            return ok
        }
    }

    /// One line to stdout at once (unbuffered, so a pipe sees each reading as it arrives).
    private func emit(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

    static let utc: DateFormatter = {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss'Z'"
        f.timeZone = TimeZone(identifier: "UTC")
        f.locale = Locale(identifier: "en_US_POSIX")
        return f
    }()

}

/// Follows each stream's seq and hash chain as readings arrive (in order, with at-least-once repeats).
struct ChainTracker {
    struct Head { var seq: UInt64; var hash: [UInt8] }
    private var heads: [StreamKey: Head] = [:]
    private var seen: [StreamKey: [UInt64: [UInt8]]] = [:]

    /// What one reading means for its stream's chain.
    mutating func observe(_ v: VerifiedRecord) -> (problem: String?, duplicate: Bool) {
        let r = v.record
        let key = StreamKey(gateway: r.gateway.rawValue, meter: r.meter.rawValue, epoch: r.epoch)
        if let earlier = seen[key]?[r.seq] {
            return earlier == v.hash ? (nil, true) : ("fork: two different records with seq \(r.seq)", false)
        }
        seen[key, default: [:]][r.seq] = v.hash
        defer {
            if (heads[key]?.seq ?? 0) < r.seq { heads[key] = Head(seq: r.seq, hash: v.hash) }
        }
        guard let head = heads[key] else { return (nil, false) }   // the first reading we see of this stream
        if r.seq == head.seq + 1 {
            return r.prev == head.hash ? (nil, false) : ("chain broken: prev does not match seq \(head.seq)", false)
        }
        if r.seq > head.seq + 1 {
            // The gateway's signed statement that its store lost exactly these seqs explains the gap.
            if let lost = r.storeLost?.seqs, lost.lowerBound <= head.seq + 1, lost.upperBound >= r.seq - 1 { return (nil, false) }
            return ("gap: seq \(head.seq + 1)…\(r.seq - 1) missing", false)
        }
        return (nil, false)   // an earlier seq arriving late (a replay filling a gap)
    }
}

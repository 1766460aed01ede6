import Delivery
import Foundation
import MQTT
import MeterCore
import Signing
import Synchronization

/// One signed record and where it is published.
struct FleetRecord: Sendable {
    var topic: String
    var bytes: [UInt8]
}

/// Every gateway's keys and signed records, made before publishing so that signing never paces the load.
struct Fleet: Sendable {
    let trustStore: TrustStore
    /// records[gateway][meter][seq - 1]
    let records: [[[FleetRecord]]]
    let gatewayIDs: [String]
    let meterIDs: [String]

    init(gateways: Int, meters: Int, intervals: Int, prefix: String, algorithm: SigningAlgorithm) throws {
        let interval: Int64 = 900_000
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // The intervals just before now: the ledger refuses readings from the future.
        let first = (now / interval - Int64(intervals)) * interval
        var store = TrustStore()
        var all: [[[FleetRecord]]] = []
        gatewayIDs = (1...gateways).map { String(format: "%@-%05d", prefix, $0) }
        meterIDs = (1...meters).map { String(format: "m%04d", $0) }
        for gatewayID in gatewayIDs {
            let key = SigningKey.generate(algorithm)
            store.add(TrustedKey(key: key.publicKey, addedMillis: now), gateway: gatewayID)
            let gateway = try GatewayID(validating: gatewayID)
            var perMeter: [[FleetRecord]] = []
            for meterID in meterIDs {
                let meter = try MeterID(validating: meterID)
                let signer = try RecordSigner(gateway: gateway, meter: meter, sourceID: "fleet:\(gatewayID):\(meterID)", envelope: .jws, key: key)
                let topic = MeterGateTopics(gateway: gatewayID).reading(meter: meterID)
                var position = StreamPosition.first(epoch: "E1")
                var total: Int64 = 1_000_000_000
                var stream: [FleetRecord] = []
                for n in 0..<intervals {
                    let delta = Int64(200_000 + (n * 7919 + meterID.hashValue & 0xFFFF) % 100_000)
                    total += delta
                    let start = first + Int64(n) * interval
                    let result = IntervalResult(meter: meter, source: .modbus, startMillis: start, endMillis: start + interval,
                                                importTotal: MilliwattHours(total), exportTotal: .zero, importDelta: MilliwattHours(delta),
                                                exportDelta: .zero, averagePowerWatts: Double(delta) * 4 / 1000, peakPowerWatts: 2000,
                                                sampleCount: 900, quality: .measured)
                    let signed = try signer.sign(result: result, position: position)
                    position = StreamPosition(epoch: position.epoch, seq: position.seq + 1, prev: signed.hash, previousKeyID: signed.keyID)
                    stream.append(FleetRecord(topic: topic, bytes: signed.bytes))
                }
                perMeter.append(stream)
            }
            all.append(perMeter)
        }
        trustStore = store
        records = all
    }

    /// Interval by interval, every gateway's meters in turn: how a fleet's readings reach the broker.
    var inPublishingOrder: [FleetRecord] {
        guard let intervals = records.first?.first?.count else { return [] }
        var order: [FleetRecord] = []
        order.reserveCapacity(records.count * (records.first?.count ?? 0) * intervals)
        for n in 0..<intervals {
            for gateway in records { for meter in gateway { order.append(meter[n]) } }
        }
        return order
    }

    /// Answers a `cmd/replay` request as a gateway does: the requested seqs of that meter, published again.
    func answer(_ message: MQTTMessage, on client: MQTTClient, progress: Progress) {
        let parts = message.topic.split(separator: "/")
        guard parts.count == 5, let g = gatewayIDs.firstIndex(of: String(parts[2])),
              let request = try? ReplayRequest(json: message.payload), let m = meterIDs.firstIndex(of: request.meter) else { return }
        progress.replayRequests.add(1, ordering: .relaxed)
        let stream = records[g][m]
        for seq in request.seqs where seq >= 1 && seq <= UInt64(stream.count) {
            let record = stream[Int(seq - 1)]
            if (try? client.publish(MQTTMessage(topic: record.topic, payload: record.bytes, qos: .atLeastOnce))) != nil {
                progress.replayed.add(1, ordering: .relaxed)
            }
        }
    }
}

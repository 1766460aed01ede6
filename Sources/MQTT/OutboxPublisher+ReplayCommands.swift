import Logging

/// The `cmd/replay` channel: what each request from the network gets, and the answer on `replay/result`.
extension OutboxPublisher {
    /// Decides what a `cmd/replay` message gets: a retained or unreadable one nothing, a valid one what the
    /// replay limits allow.
    func admitReplay(_ message: MQTTMessage) -> ReplayDecision {
        let decision: ReplayDecision
        if message.retain {
            counters.badReplayRequests += 1
            // Kept on the broker, it would be served again at every connection (and after every restart).
            decision = ReplayDecision(outcome: .refused, reason: "a retained command is ignored: send it without the retain flag")
        } else {
            do {
                decision = replays.admit(try ReplayRequest(json: message.payload), knownMeters: configuration.knownMeters, now: .now)
            } catch {
                counters.badReplayRequests += 1
                decision = ReplayDecision(outcome: .refused, reason: error.description)
            }
        }
        switch decision.outcome {
        case .accepted: counters.replayAccepted += 1
        case .clipped: counters.replayClipped += 1
        case .merged: counters.replayMerged += 1
        case .refused: counters.replayRefused += 1
        }
        return decision
    }

    /// Logs the decision and publishes it on `replay/result` (QoS 0: outside the records' window), at most
    /// ``ReplayLimits/repliesPerSecond``: a flood of requests does not become a flood of replies or log lines.
    func reply(_ decision: ReplayDecision, payload: [UInt8]) {
        let (allowed, suppressed) = replyLimiter.allow(now: .now)
        guard allowed else {
            counters.replayRepliesSuppressed += 1
            return
        }
        var metadata: Logger.Metadata = ["decision": "\(decision)"]
        if suppressed > 0 { metadata["replies_suppressed_before"] = "\(suppressed)" }
        if decision.outcome == .refused {
            metadata["payload"] = "\(String(decoding: payload.prefix(120), as: UTF8.self).debugDescription)"
            logger.warning("replay request refused", metadata: metadata)
        } else {
            logger.info("replay request", metadata: metadata)
        }
        _ = try? client.publish(MQTTMessage(topic: topics.replayResults, payload: decision.json, qos: .atMostOnce))
    }
}

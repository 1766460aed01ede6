import Logging
import MeterCore

/// Replay requests that arrive through the sink (`cmd/replay` on MQTT): what each gets, and the answer
/// (`replay/result` on MQTT).
extension OutboxPublisher {
    /// Decides what a replay request gets: a retained or unreadable one nothing, a valid one what the
    /// replay limits allow.
    func admitReplay(_ payload: [UInt8], retained: Bool) -> ReplayDecision {
        let decision: ReplayDecision
        if retained {
            counters.badReplayRequests += 1
            // Kept on the broker, it would be served again at every connection (and after every restart).
            decision = ReplayDecision(outcome: .refused, reason: "a retained command is ignored: send it without the retain flag")
        } else {
            do {
                decision = replays.admit(try ReplayRequest(json: payload), knownMeters: configuration.knownMeters, now: clock.now)
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

    /// Logs the decision and sends it back through the sink (outside the records' window), at most
    /// ``ReplayLimits/repliesPerSecond``: a flood of requests does not become a flood of replies or log lines.
    func reply(_ decision: ReplayDecision, payload: [UInt8]) {
        let (allowed, suppressed) = replyLimiter.allow(now: clock.now)
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
        sink.replyToReplay(decision.json)
    }
}

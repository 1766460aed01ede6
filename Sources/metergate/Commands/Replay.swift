import ArgumentParser

/// `metergate replay`.
struct Replay: AsyncParsableCommand, NotYetAvailable {
    static let configuration = CommandConfiguration(abstract: "Re-publish a range of a meter's records from the outbox.")
    static let capability = "replaying delivered records (metergate replay)"

    func run() async throws { try notYet() }
}

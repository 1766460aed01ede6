import ArgumentParser

/// `metergate outbox`.
struct Outbox: AsyncParsableCommand, NotYetAvailable {
    static let configuration = CommandConfiguration(abstract: "Inspect the outbox: stats, export, vacuum.")
    static let capability = "outbox inspection (metergate outbox)"

    func run() async throws { try notYet() }
}

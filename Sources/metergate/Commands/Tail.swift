import ArgumentParser

/// `metergate tail`.
struct Tail: AsyncParsableCommand, NotYetAvailable {
    static let configuration = CommandConfiguration(abstract: "Subscribe to a gateway's readings, verify each one, and print a line per reading.")
    static let capability = "tailing signed readings (metergate tail)"

    func run() async throws { try notYet() }
}

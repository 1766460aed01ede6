import ArgumentParser

/// `metergate scan`.
struct Scan: AsyncParsableCommand, NotYetAvailable {
    static let configuration = CommandConfiguration(abstract: "Walk unit ids on an RTU bus or a TCP host and identify the meters that answer.")
    static let capability = "scanning a bus (metergate scan)"

    func run() async throws { try notYet() }
}

import ArgumentParser

/// `metergate verify`.
struct Verify: AsyncParsableCommand, NotYetAvailable {
    static let configuration = CommandConfiguration(abstract: "Verify signatures and hash chains of signed records (JWS or OCMF, one per line).")
    static let capability = "verifying signed records (metergate verify)"

    func run() async throws { try notYet() }
}

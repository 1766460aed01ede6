import ArgumentParser
import CBuildInfo
import Foundation
import MeterCore

/// `metergate`: the command-line front end. Exit codes: 0 success, 1 verification or run failure,
/// 2 usage or config error.
@main
struct MeterGate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metergate",
        abstract: "Signed, store-and-forward energy readings from Modbus meters, power rails and S0 pulses.",
        discussion: "Exit codes: 0 success, 1 verification or run failure, 2 usage or config error.",
        version: MeterGate.version,
        subcommands: [Run.self, Simulate.self, Scan.self, Check.self, Keygen.self, Tail.self, Verify.self, Replay.self, Outbox.self, Ledger.self, Trust.self]
    )

    /// The release and the commit it was built from (what a record's OCMF `GV` field names is the release).
    static var version: String {
        let commit = String(cString: metergate_build_commit())
        return "metergate \(MeterGateRelease.version) (commit \(commit))"
    }

    /// Parses and runs, mapping errors to the documented exit codes (swift-argument-parser uses 64 for usage).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as Failure {
            FileHandle.standardError.write(Data("metergate: \(failure.message)\n".utf8))
            Foundation.exit(failure.code.rawValue)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            if !message.isEmpty { FileHandle.standardError.write(Data("\(message)\n".utf8)) }
            Foundation.exit(code == .validationFailure ? ExitCode.usage.rawValue : code.rawValue)
        }
    }
}

extension ExitCode {
    /// Usage or config error.
    static let usage = ExitCode(2)
    /// Verification or run failure.
    static let runFailure = ExitCode(1)
}

/// An error a command reports with a message and one of the documented exit codes.
struct Failure: Error {
    var message: String
    var code: ExitCode

    static func usage(_ message: String) -> Failure { Failure(message: message, code: .usage) }
    static func run(_ message: String) -> Failure { Failure(message: message, code: .runFailure) }
}

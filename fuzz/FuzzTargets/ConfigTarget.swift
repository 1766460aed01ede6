import ConfigFile
import Gateway
import MeterCore
import Modbus

/// Bytes as a YAML file: the gateway config, a meter profile and a board file. Anything may be wrong with the
/// text; the parsers must answer with errors that name the file, never with a crash. A profile that parses is
/// also planned and decoded with the input's own bytes as register words.
public struct ConfigTarget: FuzzTarget {
    public let name = "config"
    let root: String

    public init(repositoryRoot root: String) { self.root = root }

    public func seeds(repositoryRoot root: String) -> [[UInt8]] {
        FuzzTargets.files(in: "\(root)/examples", suffix: ".yaml") + FuzzTargets.files(in: "\(root)/profiles", suffix: ".yaml")
            + FuzzTargets.files(in: "\(root)/boards", suffix: ".yaml")
    }

    public func run(_ input: [UInt8]) -> [String] {
        let text = String(decoding: input, as: UTF8.self)
        var findings: [String] = []
        // The gateway config, resolved against the real boards and the profiles the example configs use
        // (fuzz/config-profiles links them: loading every profile for each input would cost 10x the time).
        do {
            _ = try GatewayConfig.parse(text, path: "\(root)/fuzz/gateway.yaml", boardDirectories: ["\(root)/boards"],
                                        profileDirectories: ["\(root)/fuzz/config-profiles"])
        } catch {
            if error.errors.isEmpty { findings.append("GatewayConfig.parse threw an empty error list") }
            for e in error.errors where e.file.isEmpty || e.description.isEmpty {
                findings.append("a config error without a file or a message: \(e)")
            }
        }
        guard let node = try? ConfigNode.parse(text, file: "\(root)/fuzz/sim.yaml") else { return findings }
        _ = try? Board.parse(node)
        guard let profile = try? MeterProfile.parse(node) else { return findings }
        // A profile that parses must plan requests within one Modbus read (125 registers) and the register space.
        let plan = MeterReader(profile: profile).plan
        for request in plan.requests where request.count < 1 || request.count > 125 || request.address < 0 || request.address + request.count > 65536 {
            findings.append("profile \(profile.id) plans an impossible request: \(request)")
        }
        let words = ByteCursor(input).wordsOnly()
        findings += blocking { await readout(profile, words, "profile \(profile.id)") }
        if profile.sunspecModel != nil {
            let placed = profile.located(at: 40002)
            findings += blocking { await readout(placed, words, "profile \(profile.id) at 40002") }
        }
        return findings
    }
}

extension ByteCursor {
    /// All of the input as big-endian words.
    func wordsOnly() -> [UInt16] {
        var copy = self
        return copy.words()
    }
}

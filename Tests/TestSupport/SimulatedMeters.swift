import Foundation

/// Meters served over Modbus TCP on a free loopback port by the real `metergate simulate`, for tests that run
/// the real gateway against them; stopped when released.
public final class SimulatedMeters: @unchecked Sendable {
    // Safe: owned by one test.
    public let port: Int
    public let process: BackgroundProcess

    /// `meters`: `UNIT=PROFILE[:W]` as `metergate simulate --meter` takes them. Throws when the server does not listen.
    public init(_ meters: [String] = ["1=eastron-sdm630:3000"], logPath: String) throws {
        port = freeLoopbackPort()
        process = try BackgroundProcess(try metergateBinary(), ["simulate", "--tcp", "127.0.0.1:\(port)"] + meters.flatMap { ["--meter", $0] },
                                        logPath: logPath, currentDirectory: repositoryRoot)
        guard waitUntil(timeout: 20, { isListening(port: port) }) else {
            throw TestEnvironmentError("metergate simulate did not listen on \(port): \(process.log)")
        }
    }

    deinit { process.stop() }
}

import ArgumentParser
import ConfigFile
import Foundation
import Gateway
import Logging
import Modbus
import ServiceLifecycle
import UnixSignals
import Simulator

/// `metergate simulate`: simulated meters served over real libmodbus.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve simulated meters over Modbus TCP (libmodbus server) until SIGTERM or SIGINT.",
        discussion: "Example: metergate simulate --tcp 127.0.0.1:1502 --meter 1=eastron-sdm630:3000")

    @Option(help: "Listen on HOST:PORT for Modbus TCP (port 0: any free port, printed on start).")
    var tcp: String = "127.0.0.1:1502"

    @Option(name: .customLong("meter"), help: "UNIT=PROFILE[:WATTS]: serve a meter of PROFILE at unit id UNIT drawing WATTS (default 2000).")
    var meters: [String] = []

    @Option(name: .customLong("profiles"), help: "A directory of meter profiles (default: ./profiles, then the installed set).")
    var profileDirectories: [String] = []

    @OptionGroup var log: LogOptions

    func run() async throws {
        log.bootstrap()
        let logger = Logger(label: "simulate")
        let library: ProfileLibrary
        do { library = try ProfileLibrary(directories: profileDirectories.isEmpty ? DataDirectories.profiles() : profileDirectories) }
        catch { throw Failure.usage(error.description) }
        guard !meters.isEmpty else { throw Failure.usage("--meter UNIT=PROFILE[:WATTS] is needed at least once") }
        var served: [Int: SimulatedMeter] = [:]
        for spec in meters {
            let parts = spec.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let unit = Int(parts[0]), (1...247).contains(unit) else {
                throw Failure.usage("--meter '\(spec)': expected UNIT=PROFILE[:WATTS] with UNIT 1…247")
            }
            let rest = parts[1].split(separator: ":")
            guard let profile = library[String(rest[0])] else {
                throw Failure.usage("--meter '\(spec)': no profile '\(rest[0])' (known: \(library.profiles.keys.sorted().joined(separator: ", ")))")
            }
            let watts = rest.count > 1 ? Double(rest[1]) : 2000
            guard let watts else { throw Failure.usage("--meter '\(spec)': WATTS must be a number") }
            served[unit] = SimulatedMeter(profile: profile, curve: .sine(baseWatts: watts, amplitudeWatts: watts / 4, period: .seconds(60)))
        }
        let hostPort = tcp.split(separator: ":")
        guard hostPort.count == 2, let port = Int(hostPort[1]), (0...65535).contains(port) else {
            throw Failure.usage("--tcp '\(tcp)': expected HOST:PORT")
        }
        let server: ModbusTCPServer
        do { server = try ModbusTCPServer(host: String(hostPort[0]), port: port, handler: SimulatedBus(meters: served)) }
        catch { throw Failure.run("\(error)") }
        logger.info("serving \(served.count) simulated meter(s) on tcp://\(hostPort[0]):\(server.port)",
                    metadata: ["units": "\(served.keys.sorted().map { "\($0)=\(served[$0]!.profile.id)" }.joined(separator: ","))"])
        let group = ServiceGroup(configuration: .init(services: [.init(service: ServerService(server: server))],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("simulator stopped")
    }
}

/// Keeps the server up until graceful shutdown, then stops it.
struct ServerService: Service {
    let server: ModbusTCPServer
    func run() async throws {
        try? await gracefulShutdown()
        server.stop()
    }
}

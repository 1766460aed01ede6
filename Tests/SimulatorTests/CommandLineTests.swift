import Foundation
import TestSupport
import Testing

/// `metergate simulate` and `metergate scan` as an operator runs them: real processes, real ports and ptys.
@Suite(.serialized, .timeLimit(.minutes(5))) struct CommandLineTests {
    func metergate(_ arguments: [String]) throws -> ProcessResult {
        try runProcess(try metergateBinary(), arguments, currentDirectory: repositoryRoot)
    }

    @Test func simulateThenScanOverTCPAndRTU() throws {
        let pty = try SocatPTYPair()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let simulator = try BackgroundProcess(try metergateBinary(), [
            "simulate", "--tcp", "127.0.0.1:0", "--rtu", pty.a, "--baud", "19200",
            "--meter", "1=eastron-sdm630:1500", "--meter", "3=sunspec-203", "--meter", "4=abb-b23", "--meter", "6=carlogavazzi-em340",
            "--load", "1=constant:1500", "--fault", "6=no-answer", "--import-kwh", "1=42",
        ], logPath: dir.file("sim.log"), currentDirectory: repositoryRoot)
        defer { simulator.stop(timeout: 2) }
        try #require(waitUntil(timeout: 20) { simulator.log.contains("listening rtu") }, "simulator did not start: \(simulator.log)")
        let port = try #require(Int(simulator.log.components(separatedBy: "listening tcp 127.0.0.1:")[1].prefix { $0.isNumber }))

        let tcp = try metergate(["scan", "--tcp", "127.0.0.1:\(port)", "--units", "1-6", "--timeout", "100ms"])
        #expect(tcp.status == 0, "\(tcp.stderr)")
        #expect(tcp.stdout.contains("unit 1: answers; matches eastron-sdm120, eastron-sdm630, eastron-sdm72; serial 1\n"), "\(tcp.stdout)")
        #expect(tcp.stdout.contains("unit 3: SunSpec MeterGate Simulated Model 203 SN SIM00003 at 40000, models 1, 203 → sunspec-203"), "\(tcp.stdout)")
        #expect(tcp.stdout.contains("unit 4: answers; matches abb-b23"), "\(tcp.stdout)")
        #expect(!tcp.stdout.contains("unit 2") && !tcp.stdout.contains("unit 5") && !tcp.stdout.contains("unit 6"), "silent units are not listed: \(tcp.stdout)")

        let rtu = try metergate(["scan", "--rtu", pty.b, "--baud", "19200", "--units", "2-4", "--timeout", "100ms"])
        #expect(rtu.status == 0, "\(rtu.stderr)")
        #expect(rtu.stdout.contains("unit 3: SunSpec") && rtu.stdout.contains("unit 4: answers; matches abb-b23"), "\(rtu.stdout)")

        let read = try metergate(["scan", "--rtu", pty.b, "--baud", "19200", "--unit", "1", "--read", "eastron-sdm630"])
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.stdout.contains("unit 1: eastron-sdm630, 2 request(s)"), "\(read.stdout)")
        #expect(read.stdout.contains("power                1500 W"), "\(read.stdout)")
        #expect(read.stdout.contains("identity             eastron:SDM630:1 (serial: \"1\")"), "\(read.stdout)")
        #expect(read.stdout.contains("frequency            50 Hz"), "\(read.stdout)")
        #expect(read.stdout.range(of: #"energy_import +42\d{3}(\.\d+)? Wh"#, options: .regularExpression) != nil, "\(read.stdout)")

        let sunspec = try metergate(["scan", "--tcp", "127.0.0.1:\(port)", "--unit", "3", "--read", "sunspec-203"])
        #expect(sunspec.status == 0 && sunspec.stdout.contains("model 203 at 40070"), "\(sunspec.stdout)\(sunspec.stderr)")

        // Nothing answers: a run failure (1). A dead unit read: 1 with the libmodbus error.
        let silent = try metergate(["scan", "--rtu", pty.b, "--baud", "19200", "--units", "10-11", "--timeout", "50ms"])
        #expect(silent.status == 1 && silent.stderr.contains("no unit answered"), "\(silent.stderr)")
        let dead = try metergate(["scan", "--tcp", "127.0.0.1:\(port)", "--unit", "6", "--read", "carlogavazzi-em340", "--timeout", "100ms"])
        #expect(dead.status == 1 && dead.stderr.contains("Connection timed out"), "\(dead.stderr)")
    }

    @Test func planAndUsageErrors() throws {
        let plan = try metergate(["scan", "--plan", "eastron-sdm630"])
        #expect(plan.status == 0)
        #expect(plan.stdout.contains("32 values in 2 requests"), "\(plan.stdout)")
        #expect(plan.stdout.contains("1. FC04 @0 (0x0000) ×76"), "\(plan.stdout)")
        // What `run` reads: the values records are made of.
        let run = plan.stdout.components(separatedBy: "what metergate run reads").last ?? ""
        #expect(run.contains("energy_export, energy_import, power): 2 requests, 6 registers"), "\(plan.stdout)")
        #expect(run.contains("1. FC04 @52 (0x0034) ×2  power") && run.contains("2. FC04 @72 (0x0048) ×4  energy_import, energy_export"), "\(plan.stdout)")
        let sunspec = try metergate(["scan", "--plan", "sunspec-203"])
        #expect(sunspec.stdout.contains("1 request,") && sunspec.stdout.contains("SunSpec model 203"), "\(sunspec.stdout)")
        for (args, needle) in [
            (["scan", "--plan", "nope"], "no profile 'nope'"),
            (["scan"], "--tcp HOST:PORT or --rtu DEVICE"),
            (["scan", "--tcp", "localhost"], "expected HOST:PORT"),
            (["scan", "--tcp", "127.0.0.1:1", "--units", "0-300"], "within 1…247"),
            (["scan", "--tcp", "127.0.0.1:1", "--read", "abb-b23"], "--read needs --unit"),
            (["simulate", "--meter", "1=abb-b23", "--fault", "1=explode"], "--fault '1=explode'"),
            (["simulate", "--meter", "1=abb-b23", "--load", "2=constant:5"], "for a unit given with --meter"),
            (["simulate", "--meter", "x=abb-b23"], "UNIT 1…247"),
            (["simulate"], "--meter UNIT=PROFILE"),
        ] {
            let r = try metergate(args)
            #expect(r.status == 2, "\(args): status \(r.status)")
            #expect(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
    }

    @Test func simulateFromAYAMLFile() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let port = freeLoopbackPort()
        let file = dir.write("sim.yaml", """
            tcp: 127.0.0.1:\(port)
            meters:
              - { unit: 9, profile: schneider-iem3000, load: { constant: 2500 }, import_kwh: 100 }
            """)
        let simulator = try BackgroundProcess(try metergateBinary(), ["simulate", "--config", file], logPath: dir.file("sim.log"), currentDirectory: repositoryRoot)
        defer { simulator.stop(timeout: 2) }
        try #require(waitUntil(timeout: 20) { simulator.log.contains("listening tcp") }, "\(simulator.log)")
        let read = try metergate(["scan", "--tcp", "127.0.0.1:\(port)", "--unit", "9", "--read", "schneider-iem3000"])
        #expect(read.status == 0 && read.stdout.contains("power                2500 W"), "\(read.stdout)\(read.stderr)")
        let bad = dir.write("bad.yaml", "meters:\n  - { unit: 9, profile: schneider-iem3000, load: { triangle: 3 } }\n")
        let r = try metergate(["simulate", "--config", bad])
        #expect(r.status == 2 && r.stderr.contains("bad.yaml") && r.stderr.contains("load"), "\(r.stderr)")
    }
}

// Modbus request planning benchmark: requests and bus time per poll cycle for every shipped profile, coalesced
// (RequestPlan) against one request per value, over Modbus TCP (loopback) and Modbus RTU through a socat pty
// pair whose simulator delays each answer by the time the frames would take on a real line at the baud rate.
// Also prints the RTU wire-time limit (frame bytes × bits per character ÷ baud, plus 3.5-character gaps) and
// the measured ratio to it. Figures are ratios measured in the same run; nothing here is a pass/fail test.
//
// Usage: bench/modbus/run.sh [--cycles N] [--profiles DIR]
import Foundation
import MeterCore
import Modbus
import Simulator
import Synchronization

struct Options {
    var cycles = 3
    var profiles = "profiles"
    init(_ args: [String]) {
        var i = 1
        while i < args.count {
            switch args[i] {
            case "--cycles" where i + 1 < args.count: cycles = max(1, Int(args[i + 1]) ?? 3); i += 1
            case "--profiles" where i + 1 < args.count: profiles = args[i + 1]; i += 1
            default: FileHandle.standardError.write(Data("unknown option \(args[i])\n".utf8)); exit(2)
            }
            i += 1
        }
    }
}

/// socat pty pair started by the benchmark itself.
final class PTYPair {
    let a: String, b: String
    let process = Process()
    init() throws {
        let dir = NSTemporaryDirectory() + "modbus-bench-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        a = dir + "/ttyA"
        b = dir + "/ttyB"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        process.arguments = ["pty,raw,echo=0,link=\(a)", "pty,raw,echo=0,link=\(b)"]
        try process.run()
        for _ in 0..<100 where !(FileManager.default.fileExists(atPath: a) && FileManager.default.fileExists(atPath: b)) { usleep(20_000) }
    }
    // socat does not always exit on SIGTERM once a pty end has been closed: SIGKILL it.
    deinit { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
}

/// A serial line between two pty pairs: bytes written by one side reach the other only after the time they take
/// at `baud` (10 bits a character), one character after another, each direction a line of its own; and the
/// device's side sees a frame only after the frame gap's silence, as a real RTU device waits for the frame to end.
/// Unlike the simulator's `emulateWireTime`, which sleeps inside the answer, the time here passes on the path itself:
/// the client's writes, libmodbus's reads and timeouts all meet the line's pace.
final class PacedLink: @unchecked Sendable {
    // Safe: the file descriptors are written once in init; each direction runs on its own thread.
    let client: PTYPair, device: PTYPair
    private let stop = Atomic<Bool>(false)
    private var fds: [Int32] = []
    private let done = DispatchGroup()

    /// `deviceSilence`: how long the device waits after a frame's last byte before it takes the frame as ended.
    init(baud: Int, deviceSilence: Duration) throws {
        client = try PTYPair()
        device = try PTYPair()
        let toClient = open(client.a, O_RDWR | O_NOCTTY), toDevice = open(device.a, O_RDWR | O_NOCTTY)
        guard toClient >= 0, toDevice >= 0 else { throw POSIXError(.ENOENT) }
        fds = [toClient, toDevice]
        let charNanos = UInt64(10_000_000_000 / baud)
        let (seconds, attoseconds) = deviceSilence.components
        relay(from: toClient, to: toDevice, charNanos: charNanos, silenceNanos: UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000))
        relay(from: toDevice, to: toClient, charNanos: charNanos, silenceNanos: 0)
    }

    private func relay(from input: Int32, to output: Int32, charNanos: UInt64, silenceNanos: UInt64) {
        done.enter()
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 512)
            var lineFreeAt: UInt64 = 0
            while !stop.load(ordering: .relaxed) {
                var p = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 20) > 0 else { continue }
                let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                guard n > 0 else { continue }
                // The characters leave one after another from when the line is free; the last arrives after all of them.
                let arrived = max(DispatchTime.now().uptimeNanoseconds, lineFreeAt) + UInt64(n) * charNanos
                lineFreeAt = arrived
                let deliver = arrived + silenceNanos
                while DispatchTime.now().uptimeNanoseconds < deliver {
                    let left = deliver - DispatchTime.now().uptimeNanoseconds
                    usleep(UInt32(min(left / 1000, 1_000_000)))
                }
                _ = buffer.withUnsafeBytes { write(output, $0.baseAddress, n) }
            }
            done.leave()
        }
    }

    deinit {
        stop.store(true, ordering: .relaxed)
        done.wait()
        for fd in fds { close(fd) }
    }
}

func millis(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

/// Mean time of one poll cycle (all requests of `plan`) through `reader`.
func measure(_ plan: RequestPlan, profile: MeterProfile, unit: Int, reader: any RegisterReader, pause: Duration, cycles: Int) async throws -> Duration {
    let meterReader = MeterReader(profile: profile)
    let custom = MeterReaderWithPlan(reader: meterReader, plan: plan)
    _ = try await custom.read(unit: unit, from: reader, pause: pause)   // warm-up (SunSpec-free profiles only)
    let clock = ContinuousClock()
    let start = clock.now
    for _ in 0..<cycles { _ = try await custom.read(unit: unit, from: reader, pause: pause) }
    return (clock.now - start) / cycles
}

/// Reads an arbitrary plan (the coalesced one or one request per value).
struct MeterReaderWithPlan {
    let reader: MeterReader
    let plan: RequestPlan
    func read(unit: Int, from r: any RegisterReader, pause: Duration) async throws -> Int {
        for (i, request) in plan.requests.enumerated() {
            if i > 0 && pause > .zero { try await Task.sleep(for: pause) }
            _ = try await r.readRegisters(unit: unit, space: request.space, address: request.address, count: request.count)
        }
        return plan.requests.count
    }
}

/// The least time one cycle can take on the line: every request's frames and two gaps, less the gap after the
/// last answer (it belongs to whatever the bus does next).
func wireLimit(_ plan: RequestPlan, _ s: SerialSettings) -> Duration {
    plan.requests.reduce(Duration.zero) { $0 + RTUFraming.readCycleLimit(registers: $1.count, settings: s) } - RTUFraming.interFrameGap(s)
}

/// Writes a line at once (print is block-buffered into a pipe or file).
func out(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
func pad(_ s: String) -> String { s.padding(toLength: 20, withPad: " ", startingAt: 0) }
let options = Options(CommandLine.arguments)
let library = try ProfileLibrary(directories: [options.profiles])
// SunSpec profiles need discovery first; place them where the simulator serves the model.
let profiles = library.profiles.values.sorted { $0.id < $1.id }.map {
    $0.sunspecModel == nil ? $0 : $0.located(at: SimulatedMeter.sunspecModelAddress)
}
var meters: [Int: SimulatedMeter] = [:]
for (i, p) in library.profiles.values.sorted(by: { $0.id < $1.id }).enumerated() {
    meters[i + 1] = SimulatedMeter(profile: p, curve: .constant(watts: 2000), importWattHours: 10_000)
}
let bus = SimulatedBus(meters: meters)

out("Modbus poll-cycle benchmark (\(options.cycles) cycles per figure; libmodbus \(libmodbusVersion))")
out("")
out("Requests and registers per poll cycle: coalesced plan vs one request per value")
out("profile              values  planned req  regs   per-value req  regs   request ratio")
for p in profiles {
    let plan = RequestPlan(profile: p), naive = RequestPlan.onePerValue(profile: p)
    out(pad(p.id) + String(format: " %6d  %11d  %4d   %13d  %4d   %6.1fx", p.fields.count, plan.requests.count,
                 plan.registerCount, naive.requests.count, naive.registerCount, Double(naive.requests.count) / Double(plan.requests.count)))
}

let tcpServer = try ModbusTCPServer(port: 0, handler: bus)
let tcpClient = try ModbusConnection(.tcp(host: "127.0.0.1", port: tcpServer.port))
out("")
out("Modbus TCP (loopback, libmodbus both ends): mean time per poll cycle")
out("profile              planned ms  per-value ms  speed-up")
for (i, p) in profiles.enumerated() {
    let planned = try await measure(RequestPlan(profile: p), profile: p, unit: i + 1, reader: tcpClient, pause: .zero, cycles: options.cycles * 10)
    let naive = try await measure(.onePerValue(profile: p), profile: p, unit: i + 1, reader: tcpClient, pause: .zero, cycles: options.cycles * 10)
    out(pad(p.id) + String(format: " %10.2f  %12.2f  %7.1fx", millis(planned), millis(naive), millis(naive) / millis(planned)))
}
await tcpClient.close()
tcpServer.stop()

for baud in [9600, 115_200] {
    let pty = try PTYPair()
    let settings = SerialSettings(device: pty.a, baud: baud)
    let server = try ModbusRTUServer(settings: settings, handler: bus, emulateWireTime: true)
    let client = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: baud)), responseTimeout: .seconds(2))
    let gap = RTUFraming.interFrameGap(settings)
    out("")
    out(String(format: "Modbus RTU at %d baud 8N1 (socat pty, answers delayed by their wire time; %.2f ms frame gap between requests)", baud, millis(gap)))
    out("profile              planned ms  limit ms  ratio   per-value ms  limit ms  ratio   speed-up")
    for (i, p) in profiles.enumerated() {
        let plan = RequestPlan(profile: p), naive = RequestPlan.onePerValue(profile: p)
        let planned = try await measure(plan, profile: p, unit: i + 1, reader: client, pause: gap, cycles: options.cycles)
        let slow = try await measure(naive, profile: p, unit: i + 1, reader: client, pause: gap, cycles: options.cycles)
        let pl = wireLimit(plan, settings), nl = wireLimit(naive, settings)
        out(pad(p.id) + String(format: " %10.1f  %8.1f  %5.2f   %12.1f  %8.1f  %5.2f   %7.1fx",
                     millis(planned), millis(pl), millis(planned) / millis(pl), millis(slow), millis(nl), millis(slow) / millis(nl),
                     millis(slow) / millis(planned)))
    }
    await client.close()
    server.stop()
}

// The same cycles over a line that really takes the time: a relay passes each byte on after its wire time.
for baud in [9600, 115_200] {
    let gap = RTUFraming.interFrameGap(SerialSettings(device: "", baud: baud))
    let link = try PacedLink(baud: baud, deviceSilence: gap)
    let settings = SerialSettings(device: link.device.b, baud: baud)
    let server = try ModbusRTUServer(settings: settings, handler: bus)
    let client = try ModbusConnection(.rtu(SerialSettings(device: link.client.b, baud: baud)), responseTimeout: .seconds(2))
    out("")
    out(String(format: "Modbus RTU at %d baud 8N1 over a paced link (a relay holds each byte for its wire time; %.2f ms frame gap)", baud, millis(gap)))
    out("profile              planned ms  limit ms  ratio")
    for (i, p) in profiles.enumerated() {
        let plan = RequestPlan(profile: p)
        let planned = try await measure(plan, profile: p, unit: i + 1, reader: client, pause: gap, cycles: options.cycles)
        let pl = wireLimit(plan, settings)
        out(pad(p.id) + String(format: " %10.1f  %8.1f  %5.2f", millis(planned), millis(pl), millis(planned) / millis(pl)))
    }
    await client.close()
    server.stop()
}
out("")
out("limit: per request, the request (8 bytes) and answer (5 + 2 × registers bytes) at 10 bits per character plus two")
out("3.5-character gaps (the device's end-of-frame silence and ours before the next request), less the gap after the")
out("cycle's last answer; device turnaround excluded.")
out("Unpaced pty: the simulator sleeps the frames' and the device's gap's modelled time inside each answer, so its ratio is")
out("software overhead beyond the modelled wire time. Paced link: the bytes themselves take their time on the path.")
out("ratio = measured ÷ limit (1.00: nothing lost to our software).")
out("Profile inter_request_delay pauses (e.g. 20 ms for Eastron) are not applied here; the poller adds them per request.")

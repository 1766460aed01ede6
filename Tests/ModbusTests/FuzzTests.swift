import Dispatch
import Foundation
import MeterCore
import Modbus
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

typealias SplitMix = SplitMix64

/// How the fake device damages an answer.
enum Mutation: CaseIterable {
    case none, randomBytes, flipByte, truncate, extraBytes, wrongUnit, wrongFunction, wrongByteCount, exception, silence
}

/// The register value the fake device holds at `address`.
func fuzzRegister(_ address: Int) -> UInt16 { UInt16(truncatingIfNeeded: address &* 7919 &+ 17) }

/// A device that answers read requests on a raw file descriptor (a pty end, or a TCP socket) with
/// deliberately damaged frames, chosen by the seeded generator and recorded for the test to compare.
final class MutatingDevice: @unchecked Sendable {
    // Safe: `fd` and `rtu` are immutable; `log` is behind a Mutex; the loop runs on one dispatch queue.
    let fd: Int32
    let rtu: Bool
    let log = Mutex<[Mutation]>([])
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let rng: Mutex<SplitMix>

    init(fd: Int32, rtu: Bool, seed: UInt64) {
        self.fd = fd
        self.rtu = rtu
        self.rng = Mutex(SplitMix(state: seed))
        DispatchQueue(label: "fuzz-device").async { [self] in serve(); done.signal() }
    }

    func stop() { stopped.store(true, ordering: .releasing); done.wait() }

    private func serve() {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        let requestLength = rtu ? 8 : 12
        while !stopped.load(ordering: .acquiring) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { buffer.removeAll(); continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { usleep(10_000); continue }
            buffer += chunk[0..<n]
            while buffer.count >= requestLength {
                let request = Array(buffer[0..<requestLength])
                buffer.removeFirst(requestLength)
                answer(request)
            }
        }
    }

    private func answer(_ request: [UInt8]) {
        let h = rtu ? 1 : 7
        let unit = request[h - 1], function = request[h]
        let address = Int(request[h + 1]) << 8 | Int(request[h + 2])
        let count = Int(request[h + 3]) << 8 | Int(request[h + 4])
        var pdu: [UInt8] = [function, UInt8(truncatingIfNeeded: 2 * count)]
        for i in 0..<count { let v = fuzzRegister(address + i); pdu += [UInt8(v >> 8), UInt8(v & 0xFF)] }
        let (mutation, noise): (Mutation, [UInt8]) = rng.withLock { g in
            // Every other request is clean, so the test also sees the client recover.
            let m: Mutation = g.next() % 2 == 0 ? .none : Mutation.allCases.randomElement(using: &g)!
            return (m, (0..<Int(g.next() % 40)).map { _ in UInt8.random(in: 0...255, using: &g) })
        }
        log.withLock { $0.append(mutation) }
        var unitOut = unit
        switch mutation {
        case .wrongUnit: unitOut = unit &+ 1
        case .wrongFunction: pdu[0] = function == 3 ? 4 : 3
        case .wrongByteCount: pdu[1] &+= 2
        case .exception: pdu = [function | 0x80, noise.first.map { $0 % 12 } ?? 2]
        default: break
        }
        var frame: [UInt8]
        if rtu {
            frame = [unitOut] + pdu
            let crc = RTUFraming.crc16(frame)
            frame += [UInt8(crc & 0xFF), UInt8(crc >> 8)]
        } else {
            let length = pdu.count + 1
            frame = [request[0], request[1], 0, 0, UInt8(length >> 8), UInt8(length & 0xFF), unitOut] + pdu
        }
        switch mutation {
        case .randomBytes: frame = noise.isEmpty ? [0] : noise
        case .flipByte:
            let i = Int(noise.count) % frame.count
            frame[i] ^= 0x10
        case .truncate: frame = Array(frame.prefix(max(1, frame.count - 1 - noise.count % 4)))
        case .extraBytes: frame += noise.prefix(3) + [0x55]
        case .silence: return
        default: break
        }
        _ = frame.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct FuzzTests {
    /// Random and damaged answers over RTU: the client must either return exactly the registers the device
    /// holds or throw a typed error, and must read cleanly again afterwards. CRC makes any accepted
    /// damaged frame a bug.
    @Test func randomResponseFramesOverRTU() async throws {
        let pty = try SocatPTYPair()
        let fd = open(pty.a, O_RDWR | O_NOCTTY)
        try #require(fd >= 0)
        defer { close(fd) }
        let device = MutatingDevice(fd: fd, rtu: true, seed: 0xC0FFEE)
        defer { device.stop() }
        // A response timeout well above a busy machine's scheduling delays: a clean answer is never counted as rejected.
        let client = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: 115_200)), responseTimeout: .milliseconds(500))
        await client.setByteTimeout(.milliseconds(20))
        let (accepted, rejected) = try await fuzz(client: client, device: device, iterations: 160, allowUndetected: false)
        print("RTU fuzz: \(accepted) accepted, \(rejected) rejected; mutations \(summary(device))")
        #expect(rejected > 20 && accepted > 60)
    }

    /// The same over TCP, which has no CRC: a flipped data byte cannot be detected there, but every
    /// structural damage must be refused, and the connection must recover.
    @Test func randomResponseFramesOverTCP() async throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        listen(listener, 8)
        defer { close(listener) }
        let port = Int(UInt16(bigEndian: address.sin_port))
        // The client reconnects after a broken frame, so accept connection after connection.
        let devices = Mutex<[MutatingDevice]>([])
        let stop = Atomic<Bool>(false)
        let acceptor = DispatchSemaphore(value: 0)
        DispatchQueue(label: "fuzz-accept").async {
            var seed: UInt64 = 7
            while !stop.load(ordering: .acquiring) {
                var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 50) > 0 else { continue }
                let c = accept(listener, nil, nil)
                if c >= 0 { seed += 1; devices.withLock { $0.append(MutatingDevice(fd: c, rtu: false, seed: seed)) } }
            }
            acceptor.signal()
        }
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: port), responseTimeout: .milliseconds(500))
        let (accepted, rejected) = try await fuzz(client: client, device: nil, iterations: 120, allowUndetected: true)
        stop.store(true, ordering: .releasing)
        acceptor.wait()
        for d in devices.withLock({ $0 }) { d.stop(); close(d.fd) }
        print("TCP fuzz: \(accepted) accepted, \(rejected) rejected over \(devices.withLock { $0.count }) connection(s)")
        #expect(rejected > 15 && accepted > 40)
    }

    private func fuzz(client: ModbusConnection, device: MutatingDevice?, iterations: Int, allowUndetected: Bool) async throws -> (Int, Int) {
        var accepted = 0, rejected = 0
        var g = SplitMix(state: 42)
        for _ in 0..<iterations {
            let address = Int(g.next() % 1000), count = 1 + Int(g.next() % 40)
            let expected = (0..<count).map { fuzzRegister(address + $0) }
            do {
                let words = try await client.readHoldingRegisters(unit: 1, address: address, count: count)
                #expect(words.count == count)
                if !allowUndetected { #expect(words == expected, "an RTU client accepted a damaged answer") }
                accepted += 1
            } catch {
                #expect(!error.function.isEmpty)
                rejected += 1
            }
        }
        return (accepted, rejected)
    }

    private func summary(_ device: MutatingDevice) -> String {
        let log = device.log.withLock { $0 }
        return Mutation.allCases.map { m in "\(m): \(log.filter { $0 == m }.count)" }.joined(separator: ", ")
    }
}

@Suite(.timeLimit(.minutes(5))) struct DecoderFuzzTests {
    /// Random words through every decoder and field shape: never a trap, and NaN or infinity never
    /// reaches a value.
    @Test func randomWordsNeverTrapOrLeakNaN() {
        var g = SplitMix(state: 99)
        for _ in 0..<20_000 {
            let type = RegisterType.allCases.randomElement(using: &g)!
            let words = (0..<type.registerCount + 1).map { _ in UInt16(truncatingIfNeeded: g.next()) }
            let field = RegisterField(quantity: .power, space: .holding, address: 0, type: type,
                                      wordOrder: Bool.random(using: &g) ? .bigEndian : .littleEndian,
                                      byteOrder: Bool.random(using: &g) ? .bigEndian : .swapped, unit: .kilowatt,
                                      scale: 0.1, scaleFactorAddress: Bool.random(using: &g) ? type.registerCount : nil)
            switch field.read(from: RegisterBlock(space: .holding, address: 0, words: words)) {
            case .value(let v): #expect(v.isFinite)
            case .notImplemented, .missing: break
            }
            #expect(decodeRegisters(words.prefix(type.registerCount), as: type) != nil)
            #expect(decodeRegisters(words, as: type) == nil)
        }
    }
}

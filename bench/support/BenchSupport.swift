// What the MeterGate benchmarks share: CPU and wall clocks, operation rates, swift-crypto's raw signing
// rate (the reference every signing figure is a ratio to), and a throwaway mosquitto on a loopback port.
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Seconds of CPU time this thread has used (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`). Rates per
/// CPU-second hold steady on a machine that other work shares, where wall-clock rates do not.
public func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Seconds of CPU time the whole process has used, user and system, all threads (`getrusage(RUSAGE_SELF)`).
public func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Seconds on the monotonic clock (`clock_gettime(CLOCK_MONOTONIC)`).
public func wallSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Runs `body` repeatedly for about `seconds` of this thread's CPU time; returns operations per CPU-second.
public func rate(seconds: Double, _ body: () throws -> Void) rethrows -> Double {
    var count = 0
    let start = threadCPUSeconds()
    while threadCPUSeconds() - start < seconds {
        for _ in 0..<16 { try body() }
        count += 16
    }
    return Double(count) / (threadCPUSeconds() - start)
}

/// The curves MeterGate signs with, as swift-crypto names them.
public enum RawCurve: String, Sendable, CaseIterable {
    case ed25519 = "Ed25519"
    case p256 = "P-256"
}

/// swift-crypto's raw signing rate for `curve`: signatures over `message` with a fresh key, per CPU-second
/// of this thread, for about `seconds` of CPU time.
public func rawSignRate(_ curve: RawCurve, message: [UInt8], seconds: Double) throws -> Double {
    switch curve {
    case .ed25519:
        let key = Curve25519.Signing.PrivateKey()
        return try rate(seconds: seconds) { _ = try key.signature(for: message) }
    case .p256:
        let key = P256.Signing.PrivateKey()
        return try rate(seconds: seconds) { _ = try key.signature(for: message) }
    }
}

/// The full path of an executable on `PATH` (and the sbin directories, where Debian puts mosquitto).
public func which(_ name: String) -> String {
    for dir in ((ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    fatalError("\(name) is not installed")
}

/// A TCP port on 127.0.0.1 that nothing listens on now (`bind` to port 0, `getsockname`).
public func freePort() -> Int {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(s) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) } }
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) } }
    return Int(UInt16(bigEndian: a.sin_port))
}

/// Starts `executable` with its output discarded.
public func launch(_ executable: String, _ arguments: [String], stdin: Pipe? = nil) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    if let stdin { p.standardInput = stdin }
    try p.run()
    return p
}

/// Starts a mosquitto on a free loopback port with no persistence and no queue limits (config in `directory`);
/// returns the process and its port once it accepts connections.
public func startMosquitto(in directory: String) throws -> (process: Process, port: Int) {
    let port = freePort()
    try "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 0\n"
        .write(toFile: "\(directory)/mosquitto.conf", atomically: true, encoding: .utf8)
    let broker = try launch(which("mosquitto"), ["-c", "\(directory)/mosquitto.conf"])
    let deadline = wallSeconds() + 10
    while wallSeconds() < deadline {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
        close(s)
        if connected { return (broker, port) }
        usleep(20_000)
    }
    broker.terminate()
    fatalError("mosquitto did not listen on 127.0.0.1:\(port) within 10 s")
}

/// CPU time per message of `mosquitto_pub -l` (libmosquitto's own client) publishing `count` copies of
/// `payload` at QoS 1 to the broker on `port` and reading every PUBACK: what sending one reading over MQTT costs
/// the sender with nothing else to do, no signing and no storage. User + system seconds of the child
/// (`getrusage(RUSAGE_CHILDREN)` before and after it is reaped), divided by `count`.
public func mosquittoPubCPUPerMessage(port: Int, payload: [UInt8], count: Int) throws -> Double {
    precondition(!payload.contains(UInt8(ascii: "\n")), "mosquitto_pub -l sends one message per line")
    func childrenCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
    var lines: [UInt8] = []
    lines.reserveCapacity((payload.count + 1) * count)
    for _ in 0..<count { lines += payload; lines.append(UInt8(ascii: "\n")) }
    let input = Pipe()
    let before = childrenCPUSeconds()
    let pub = try launch(which("mosquitto_pub"), ["-h", "127.0.0.1", "-p", "\(port)", "-q", "1", "-t", "bench/transport-floor", "-l"], stdin: input)
    try input.fileHandleForWriting.write(contentsOf: lines)
    try input.fileHandleForWriting.close()
    pub.waitUntilExit()
    guard pub.terminationStatus == 0 else { fatalError("mosquitto_pub exited with \(pub.terminationStatus)") }
    return (childrenCPUSeconds() - before) / Double(count)
}

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The repository root (for examples/, boards/, profiles/ and the built binary).
public let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A fresh temporary directory, removed by `cleanup()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "metergate-test") {
        let template = NSTemporaryDirectory() + "\(prefix)-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard mkdtemp(&bytes) != nil else { fatalError("mkdtemp failed: errno \(errno)") }
        path = String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    @discardableResult
    public func write(_ name: String, _ contents: String) -> String {
        let p = file(name)
        _ = FileManager.default.createFile(atPath: p, contents: Data(contents.utf8))
        return p
    }

    public func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, from this process's range (`testPortRange`).
public func freeLoopbackPort() -> Int {
    // Never the same port twice in this process: two servers of one test run cannot be handed one port, even
    // when the first has not bound it yet. The range lies below the kernel's ephemeral ports, so no client
    // socket takes a port between choosing and binding it, and the concurrent test steps of scripts/test.sh
    // each get a range of their own.
    let range = testPortRange
    for _ in 0..<range.count {
        let port = nextPortCursor.withLock { cursor -> Int in
            defer { cursor = cursor + 1 == range.upperBound ? range.lowerBound : cursor + 1 }
            return cursor
        }
        guard handedOutPorts.withLock({ $0.insert(port).inserted }) else { continue }
        if canBindLoopback(port: port) { return port }
    }
    fatalError("no free port left in \(range) (METERGATE_TEST_PORTS)")
}

/// The ports this process hands out: `METERGATE_TEST_PORTS=LOW-HIGH` (scripts/test.sh gives each concurrent step
/// its own), else 20000–32767, below Linux's ephemeral range (32768–60999).
public let testPortRange: Range<Int> = {
    let fallback = 20000..<32768
    guard let text = ProcessInfo.processInfo.environment["METERGATE_TEST_PORTS"] else { return fallback }
    let bounds = text.split(separator: "-").compactMap { Int($0) }
    guard bounds.count == 2, 1024 <= bounds[0], bounds[0] < bounds[1], bounds[1] <= 65535 else {
        fatalError("METERGATE_TEST_PORTS must read LOW-HIGH (1024…65535), not '\(text)'")
    }
    return bounds[0]..<(bounds[1] + 1)
}()

private let handedOutPorts = Mutex<Set<Int>>([])
// Starts at a random place, so two test processes run by hand without a range of their own seldom meet.
private let nextPortCursor = Mutex<Int>(Int.random(in: testPortRange))

/// Whether 127.0.0.1:`port` can be bound now (closed again at once). Without SO_REUSEADDR, so a port still held
/// by a closed connection (TIME_WAIT) counts as taken: a server without that option could not bind it either.
private func canBindLoopback(port: Int) -> Bool {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard s >= 0 else { return false }
    defer { close(s) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// Finds an executable on PATH (or in the usual sbin directories, where mosquitto lives).
public func which(_ name: String) -> String? {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// The outcome of a finished child process.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program to completion and captures its output.
@discardableResult
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                       currentDirectory: String? = nil, stdin: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try? input.fileHandleForWriting.close()
    // Read both pipes before waiting, so a chatty child cannot fill a pipe and block.
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    group.enter(); DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter(); DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.wait()
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// A background child process, killed by `stop()`.
public final class BackgroundProcess: @unchecked Sendable {
    // Safe: `process` is only touched from the test that owns this object.
    public let process: Process
    public let logPath: String

    public init(_ executable: String, _ arguments: [String], logPath: String, environment: [String: String]? = nil,
                currentDirectory: String? = nil) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        self.logPath = logPath
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits up to `timeout` seconds for the process to exit; SIGKILL after that.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Double = 10) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Thrown by a test's wait that ran out of time: the test stops there rather than checking (or indexing) what
/// never came.
public struct TimedOut: Error, CustomStringConvertible {
    public let what: String
    public init(what: String) { self.what = what }
    public var description: String { "timed out waiting until \(what)" }
}

/// Waits until `condition` holds or `timeout` seconds pass; returns whether it held.
public func waitUntil(timeout: Double, interval: Double = 0.05, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(UInt32(interval * 1_000_000))
    }
    return condition()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
public func isListening(port: Int) -> Bool {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(s) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A real mosquitto broker on a free loopback port, with its own config and persistence off.
public final class MosquittoBroker: @unchecked Sendable {
    // Safe: owned by one test.
    public let port: Int
    public let directory: TemporaryDirectory
    private var child: BackgroundProcess?

    public init(port: Int? = nil, extraConfig: String = "") throws {
        guard let mosquitto = which("mosquitto") else {
            throw TestEnvironmentError("mosquitto is not installed (apt-get install mosquitto)")
        }
        directory = TemporaryDirectory("mosquitto")
        // A port taken by another process between choosing and binding it: mosquitto exits ("Address already in
        // use") while the other listens, so listening alone proves nothing. Ours must still run; else another port.
        var attempt = 0
        while true {
            attempt += 1
            let candidate = port ?? freeLoopbackPort()
            let conf = directory.write("mosquitto.conf", """
                listener \(candidate) 127.0.0.1
                allow_anonymous true
                persistence false
                log_dest stderr
                max_inflight_messages 0
                max_queued_messages 0
                \(extraConfig)
                """)
            let started = try BackgroundProcess(mosquitto, ["-c", conf], logPath: directory.file("broker.log"))
            let up = waitUntil(timeout: 10, { isListening(port: candidate) || !started.isRunning }) && started.isRunning
            if up {
                self.port = candidate
                child = started
                return
            }
            let log = started.log
            started.stop(signal: SIGKILL, timeout: 5)
            guard port == nil, attempt < 5, log.contains("Address already in use") else {
                throw TestEnvironmentError("mosquitto did not start on port \(candidate): \(log)")
            }
        }
    }

    /// Kills the broker (SIGKILL: an outage, not a shutdown).
    public func kill() { child?.stop(signal: SIGKILL, timeout: 5); child = nil }

    /// Starts it again on the same port.
    public func restart() throws {
        kill()
        guard let mosquitto = which("mosquitto") else { throw TestEnvironmentError("mosquitto vanished") }
        child = try BackgroundProcess(mosquitto, ["-c", directory.file("mosquitto.conf")], logPath: directory.file("broker.log"))
        guard waitUntil(timeout: 10, { isListening(port: self.port) }) else { throw TestEnvironmentError("mosquitto did not restart") }
    }

    public var log: String { child?.log ?? "" }

    deinit {
        // SIGKILL: persistence is off, so there is nothing to save, and a broker started by the test runner may
        // inherit a signal mask that holds SIGTERM, costing the 5 s wait for every broker.
        child?.stop(signal: SIGKILL, timeout: 5)
        directory.cleanup()
    }
}

/// A pseudo-terminal pair made by socat: bytes written to one end come out of the other, as on a serial line.
public final class SocatPTYPair: @unchecked Sendable {
    // Safe: owned by one test.
    public let a: String
    public let b: String
    private let child: BackgroundProcess
    private let directory: TemporaryDirectory

    public init() throws {
        guard let socat = which("socat") else { throw TestEnvironmentError("socat is not installed (apt-get install socat)") }
        directory = TemporaryDirectory("socat")
        a = directory.file("ttyA")
        b = directory.file("ttyB")
        child = try BackgroundProcess(socat, ["-d", "-d", "pty,raw,echo=0,link=\(a)", "pty,raw,echo=0,link=\(b)"], logPath: directory.file("socat.log"))
        guard waitUntil(timeout: 10, { FileManager.default.fileExists(atPath: self.a) && FileManager.default.fileExists(atPath: self.b) }) else {
            throw TestEnvironmentError("socat did not create the pty pair: \(child.log)")
        }
    }

    deinit {
        // SIGKILL: socat does not always exit on SIGTERM once one pty end has been closed (it waited out the 5 s).
        child.stop(signal: SIGKILL, timeout: 5)
        directory.cleanup()
    }
}

/// The test machine lacks something the test needs; the message says what to install.
public struct TestEnvironmentError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The built `metergate` binary next to the test bundle (SwiftPM puts both in the same build directory).
public func metergateBinary() throws -> String { try builtBinary("metergate") }

/// A binary of this package built beside the tests (`swift build --build-tests` builds every product).
public func builtBinary(_ name: String) throws -> String {
    let bundle = Bundle.main.bundleURL.deletingLastPathComponent()
    for candidate in [bundle.appendingPathComponent(name).path, "\(repositoryRoot)/.build/debug/\(name)"]
    where FileManager.default.isExecutableFile(atPath: candidate) {
        return candidate
    }
    throw TestEnvironmentError("the \(name) binary is not built (swift build --product \(name))")
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`: collects every message a child sends.
public final class FakeNotifySocket: @unchecked Sendable {
    // Safe: `messages` is guarded by `lock`; `fd` is immutable after init and closed once in deinit.
    public let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private let reader = DispatchGroup()

    public init(path: String) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        reader.enter()
        let socketFD = fd
        DispatchQueue.global().async { [weak self] in
            defer { self?.reader.leave() }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while let me = self {
                let n = recv(socketFD, &buffer, buffer.count, 0)
                if n > 0 {
                    let text = String(decoding: buffer[0..<n], as: UTF8.self)
                    me.lock.lock(); me.received.append(text); me.lock.unlock()
                } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    return
                }
            }
        }
    }

    /// Every message so far, in arrival order.
    public var messages: [String] { lock.lock(); defer { lock.unlock() }; return received }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}

/// SplitMix64: a small deterministic generator, so "random" test data is the same every run and a failing
/// case can be replayed from its seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

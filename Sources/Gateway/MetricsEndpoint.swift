import Dispatch
import Foundation
import Prometheus
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What `/health` answers: healthy or not, and why, in one line an operator can act on.
public struct HealthReport: Sendable, Hashable {
    public var healthy: Bool
    public var detail: String
    public init(healthy: Bool, detail: String) {
        self.healthy = healthy
        self.detail = detail
    }
}

/// Why the metrics endpoint could not start.
public struct MetricsEndpointError: Error, Hashable, Sendable, CustomStringConvertible {
    public let function: String
    public let code: Int32
    public let address: String
    public var description: String {
        "metrics endpoint \(address): \(function) failed: \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// A minimal HTTP/1.1 endpoint for `/metrics` (Prometheus text format from a registry) and `/health`.
///
/// Scrapes are rare and small, so requests are served one at a time on a dispatch queue of the endpoint's
/// own (blocking `accept`/`recv` never touch the cooperative pool). Each connection has a 2-second receive
/// timeout, so a stuck client cannot hold the endpoint.
public final class MetricsEndpoint: Sendable {
    public let port: Int
    public let host: String
    private let socketFD: Int32
    private let registry: PrometheusCollectorRegistry
    private let health: @Sendable () -> HealthReport
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Listens on `host:port` (port 0: any free port). The corresponding C functions are `socket`, `bind`, `listen`.
    public init(host: String, port: Int, registry: PrometheusCollectorRegistry, health: @escaping @Sendable () -> HealthReport) throws(MetricsEndpointError) {
        let address = "\(host):\(port)"
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MetricsEndpointError(function: "socket", code: errno, address: address) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &sin.sin_addr) == 1 else {
            close(fd)
            throw MetricsEndpointError(function: "inet_pton", code: EINVAL, address: address)
        }
        let bound = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { let e = errno; close(fd); throw MetricsEndpointError(function: "bind", code: e, address: address) }
        guard listen(fd, 8) == 0 else { let e = errno; close(fd); throw MetricsEndpointError(function: "listen", code: e, address: address) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.port = Int(UInt16(bigEndian: sin.sin_port))
        self.host = host
        self.socketFD = fd
        self.registry = registry
        self.health = health
        DispatchQueue(label: "metergate.metrics").async { [self] in
            serve()
            finished.signal()
        }
    }

    /// Stops serving and waits for the endpoint's thread to end.
    public func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        shutdown(socketFD, Int32(SHUT_RDWR))
        finished.wait()
        close(socketFD)
    }

    deinit { stop() }

    private func serve() {
        while !stopped.load(ordering: .acquiring) {
            let client = accept(socketFD, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 1024)
        while request.count < 8192 {
            let n = recv(client, &buffer, buffer.count, 0)
            if n <= 0 { break }
            request += buffer[0..<n]
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let (status, type, body): (String, String, [UInt8])
        if line.count >= 2, line[0] == "GET" || line[0] == "HEAD" {
            switch line[1].split(separator: "?").first.map(String.init) ?? "" {
            case "/metrics":
                (status, type, body) = ("200 OK", "text/plain; version=0.0.4; charset=utf-8", registry.emitToBuffer())
            case "/health":
                let report = health()
                let json = "{\"healthy\":\(report.healthy),\"detail\":\"\(report.detail.replacingOccurrences(of: "\"", with: "'"))\"}\n"
                (status, type, body) = (report.healthy ? "200 OK" : "503 Service Unavailable", "application/json", Array(json.utf8))
            default:
                (status, type, body) = ("404 Not Found", "text/plain", Array("not found: try /metrics or /health\n".utf8))
            }
        } else {
            (status, type, body) = ("405 Method Not Allowed", "text/plain", Array("only GET\n".utf8))
        }
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var response = Array(head.utf8)
        if line.first != "HEAD" { response += body }
        var offset = 0
        while offset < response.count {
            let n = response[offset...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }
}

import Foundation
import Gateway
import Metrics
import Prometheus
import TestSupport
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(5))) struct MetricsEndpointTests {
    /// Fetches a URL with curl (an HTTP client nobody here wrote); returns status code and body.
    func fetch(_ url: String) throws -> (Int, String) {
        guard let curl = which("curl") else { throw TestEnvironmentError("curl is not installed") }
        let r = try runProcess(curl, ["-s", "-w", "\n%{http_code}", "--max-time", "5", url])
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test func servesPrometheusTextAndHealth() throws {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        let polls = factory.makeCounter(label: "metergate_polls_total", dimensions: [("meter", "m1")])
        polls.increment(by: 3)
        let healthy = Atomic<Bool>(true)
        let endpoint = try MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry) {
            let ok = healthy.load(ordering: .relaxed)
            return HealthReport(healthy: ok, detail: ok ? "ok" : "broker disconnected for 120 s and backlog 5000 above alarm 1000")
        }
        defer { endpoint.stop() }
        let (status, body) = try fetch("http://127.0.0.1:\(endpoint.port)/metrics")
        #expect(status == 200)
        #expect(body.contains("metergate_polls_total{meter=\"m1\"} 3"))
        #expect(try fetch("http://127.0.0.1:\(endpoint.port)/health").0 == 200)
        healthy.store(false, ordering: .relaxed)
        let (down, reason) = try fetch("http://127.0.0.1:\(endpoint.port)/health")
        #expect(down == 503)
        #expect(reason.contains("broker disconnected"))
        #expect(try fetch("http://127.0.0.1:\(endpoint.port)/nope").0 == 404)
    }

    @Test func aTakenPortIsAClearError() throws {
        let registry = PrometheusCollectorRegistry()
        let first = try MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry) { HealthReport(healthy: true, detail: "") }
        defer { first.stop() }
        let error = #expect(throws: MetricsEndpointError.self) {
            try MetricsEndpoint(host: "127.0.0.1", port: first.port, registry: registry) { HealthReport(healthy: true, detail: "") }
        }
        #expect(error?.function == "bind")
        #expect(error?.description.contains("127.0.0.1:\(first.port)") == true)
    }
}

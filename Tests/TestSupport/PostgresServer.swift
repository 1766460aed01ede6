import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server (Debian's `postgresql` package) in a temporary directory on a free loopback port:
/// `initdb` and `pg_ctl` run as the unprivileged `postgres` user when the tests run as root, as PostgreSQL requires.
/// TCP logins need the password (SCRAM), which ``passwordFile`` holds; the tests' own admin work goes through the
/// server's Unix socket.
public final class PostgresServer: @unchecked Sendable {
    // Safe: its state is set in init and only read after, but for `child` restarts, made by the one test that owns it.
    public let port: Int
    public let directory: TemporaryDirectory
    public let user = "metergate"
    public let password: String
    /// A file holding only the password (mode 600), for `--db-password-file`.
    public let passwordFile: String
    private let bin: String
    private let options: String
    private let asPostgres: Bool

    /// The server every test of this process shares (each test makes its own database); stopped when the process exits.
    public static func shared() throws -> PostgresServer {
        try sharedServer.get()
    }

    nonisolated(unsafe) private static var sharedServer: Result<PostgresServer, any Error> = {
        let result = Result { try PostgresServer() }
        atexit { if case .success(let server) = PostgresServer.sharedServer { server.stop() } }
        return result
    }()

    /// `settings` are extra `-c name=value` server settings (e.g. TLS files).
    public init(settings: [String] = []) throws {
        guard let bin = Self.binDirectory() else {
            throw TestEnvironmentError("PostgreSQL is not installed (apt-get install postgresql): no /usr/lib/postgresql/*/bin/initdb")
        }
        self.bin = bin
        directory = TemporaryDirectory("postgres")
        asPostgres = getuid() == 0
        password = (0..<24).map { _ in String("abcdefghijkmnpqrstuvwxyz23456789".randomElement()!) }.joined()
        passwordFile = directory.write("password", password)
        chmod(passwordFile, 0o600)
        let initPassword = directory.write("initdb-password", password)
        if asPostgres {
            _ = try runProcess("/bin/chown", ["-R", "postgres:postgres", directory.path])
        }
        let initdb = try Self.run(asPostgres, "\(bin)/initdb", ["-D", directory.file("data"), "-U", user, "--pwfile=\(initPassword)",
                                                               "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"])
        guard initdb.status == 0 else { throw TestEnvironmentError("initdb failed: \(initdb.stderr)\(initdb.stdout)") }
        if asPostgres { _ = try runProcess("/bin/chown", ["root:root", passwordFile]) }
        // Durability is not what these tests check; without fsync the server keeps pace on a busy two-core machine.
        options = (["-c listen_addresses=127.0.0.1", "-k \(directory.path)", "-c fsync=off", "-c max_connections=200"]
                   + settings.map { "-c \($0)" }).joined(separator: " ")
        var attempt = 0
        while true {
            attempt += 1
            let candidate = freeLoopbackPort()
            let started = try Self.startServer(asPostgres, bin, directory, options, port: candidate)
            if started.status == 0 {
                port = candidate
                return
            }
            guard attempt < 5, started.stderr.contains("could not bind") || started.stderr.contains("already in use") else {
                throw TestEnvironmentError("PostgreSQL did not start on port \(candidate): \(started.stderr)")
            }
        }
    }

    /// A new, empty database; its URL (no password in it: use ``passwordFile``).
    public func createDatabase(_ name: String = "ledger_\(UInt32.random(in: 0...UInt32.max))") throws -> String {
        try psql("CREATE DATABASE \(name)")
        return url(database: name)
    }

    public func url(database: String, sslmode: String? = nil) -> String {
        "postgresql://\(user)@127.0.0.1:\(port)/\(database)" + (sslmode.map { "?sslmode=\($0)" } ?? "")
    }

    /// Runs SQL as the admin user over the Unix socket; its output, or an error with psql's words.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        let result = try runProcess("\(bin)/psql", ["-h", directory.path, "-p", "\(port)", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1",
                                                    "-X", "-q", "-A", "-t", "-c", sql])
        guard result.status == 0 else { throw TestEnvironmentError("psql \(sql): \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops the server at once (`-m immediate`: a crash, as far as clients can tell).
    public func stop() {
        guard let pid = serverPID else { return }
        kill(pid, SIGQUIT)   // PostgreSQL's immediate shutdown
        _ = waitUntil(timeout: 30) { kill(pid, 0) != 0 }
        try? FileManager.default.removeItem(atPath: directory.file("data/postmaster.pid"))
    }

    /// Starts it again on the same port.
    public func start() throws {
        let started = try Self.startServer(asPostgres, bin, directory, options, port: port)
        guard started.status == 0 else { throw TestEnvironmentError("PostgreSQL did not restart: \(started.stderr)") }
    }

    /// Runs `postgres` itself (no `pg_ctl`, whose exit Foundation's Process does not always see once the server it
    /// forked holds its descriptors) and waits until it listens or says why it cannot.
    private static func startServer(_ asPostgres: Bool, _ bin: String, _ directory: TemporaryDirectory, _ options: String,
                                    port: Int) throws -> ProcessResult {
        let log = directory.file("server.log")
        let arguments = ["-D", directory.file("data"), "-p", "\(port)"] + options.split(separator: " ").map(String.init)
        let child = asPostgres
            ? try BackgroundProcess("/usr/sbin/runuser", ["-u", "postgres", "--", "\(bin)/postgres"] + arguments, logPath: log)
            : try BackgroundProcess("\(bin)/postgres", arguments, logPath: log)
        // Failed: the server exited, or cannot listen. Not any FATAL line: while a server restarted after a crash
        // recovers, each client that connects is refused with "FATAL: the database system is starting up".
        let failed = { !child.isRunning || child.log.contains("could not bind") }
        let up = waitUntil(timeout: 60) { (isListening(port: port) && child.log.contains("ready to accept connections")) || failed() }
        return ProcessResult(status: up && !failed() ? 0 : 1, stdout: "", stderr: child.log)
    }

    /// The running server's process id, from its `postmaster.pid`.
    private var serverPID: pid_t? {
        guard let text = try? String(contentsOfFile: directory.file("data/postmaster.pid"), encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first.flatMap { pid_t($0) }
    }

    public var log: String { (try? String(contentsOfFile: directory.file("server.log"), encoding: .utf8)) ?? "" }

    deinit {
        stop()
        directory.cleanup()
    }

    private static func run(_ asPostgres: Bool, _ program: String, _ arguments: [String]) throws -> ProcessResult {
        asPostgres ? try runProcess("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments) : try runProcess(program, arguments)
    }

    private static func binDirectory() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.reversed().map { "\(root)/\($0)/bin" }.first { FileManager.default.isExecutableFile(atPath: "\($0)/initdb") }
    }
}

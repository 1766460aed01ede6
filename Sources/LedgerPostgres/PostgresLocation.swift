import Foundation

/// Why a PostgreSQL URL or its password could not be used: the part that was wrong, in words.
public struct PostgresLocationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where a PostgreSQL ledger lives: `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE&sslrootcert=FILE]`,
/// the URL form libpq reads, over TCP. The password comes from a file rather than the URL (a URL shows in `ps`):
/// `--db-password-file`, else `PGPASSWORD`, else the libpq password file (`PGPASSFILE` or `~/.pgpass`).
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    /// libpq's `sslmode` values that MeterGate follows. `prefer` (the default) uses TLS when the server offers it.
    public enum TLSMode: String, Sendable, Hashable, CaseIterable {
        case disable, prefer, require
        /// TLS, the server's certificate checked against `sslrootcert` (or the system's roots) and its name.
        case verifyFull = "verify-full"
    }

    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var tls: TLSMode
    /// The CA file for `verify-full`.
    public var rootCertificate: String?

    /// Whether `text` is a PostgreSQL URL rather than a SQLite path.
    public static func isURL(_ text: String) -> Bool { text.hasPrefix("postgresql://") || text.hasPrefix("postgres://") }

    /// Reads the URL; the password, when the URL has none, from `passwordFile`, `PGPASSWORD` or the libpq password file.
    public init(url text: String, passwordFile: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws(PostgresLocationError) {
        guard Self.isURL(text), let url = URLComponents(string: text) else {
            throw PostgresLocationError("'\(Self.redacted(text))' is not a PostgreSQL URL: expected postgresql://USER@HOST:PORT/DATABASE")
        }
        guard let host = url.host, !host.isEmpty else { throw PostgresLocationError("\(Self.redacted(text)): no host (postgresql://USER@HOST:PORT/DATABASE)") }
        guard let user = url.user?.removingPercentEncoding, !user.isEmpty else {
            throw PostgresLocationError("\(Self.redacted(text)): no user (postgresql://USER@HOST:PORT/DATABASE)")
        }
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        guard let database = path.removingPercentEncoding, !database.isEmpty, !database.contains("/") else {
            throw PostgresLocationError("\(Self.redacted(text)): no database name after the host (postgresql://USER@HOST:PORT/DATABASE)")
        }
        let port = url.port ?? 5432
        guard (1...65_535).contains(port) else { throw PostgresLocationError("\(Self.redacted(text)): port \(port) is not 1 to 65535") }
        var tls = TLSMode.prefer
        var rootCertificate: String?
        for item in url.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = item.value.flatMap(TLSMode.init(rawValue:)) else {
                    throw PostgresLocationError("sslmode '\(item.value ?? "")' is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                tls = mode
            case "sslrootcert":
                rootCertificate = item.value
            default:
                throw PostgresLocationError("unknown URL parameter '\(item.name)' (known: sslmode, sslrootcert)")
            }
        }
        if rootCertificate != nil && tls != .verifyFull {
            throw PostgresLocationError("sslrootcert is only read with sslmode=verify-full")
        }
        self.user = user
        self.host = host
        self.port = port
        self.database = database
        self.tls = tls
        self.rootCertificate = rootCertificate
        if let inURL = url.password { password = inURL.removingPercentEncoding ?? inURL; return }
        if let passwordFile { password = try Self.readPasswordFile(passwordFile); return }
        if let fromEnvironment = environment["PGPASSWORD"] { password = fromEnvironment; return }
        let pgpass = environment["PGPASSFILE"] ?? environment["HOME"].map { "\($0)/.pgpass" }
        password = try pgpass.flatMap { file throws(PostgresLocationError) in
            try Self.lookUp(passFile: file, host: host, port: port, database: database, user: user, required: environment["PGPASSFILE"] != nil)
        }
    }

    /// The URL without its password, for logs and errors.
    public var description: String {
        "postgresql://\(user)@\(host):\(port)/\(database)" + (tls == .prefer ? "" : "?sslmode=\(tls.rawValue)")
    }

    /// A URL with any password replaced, so that an error never echoes it.
    static func redacted(_ text: String) -> String {
        guard var url = URLComponents(string: text), url.password != nil else { return text }
        url.password = "***"
        return url.string ?? "postgresql://…"
    }

    /// The first line of a file that holds only the password; refused when others may read it.
    static func readPasswordFile(_ path: String) throws(PostgresLocationError) -> String {
        try checkPrivate(path, what: "--db-password-file")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw PostgresLocationError("--db-password-file \(path): cannot be read")
        }
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard !line.isEmpty else { throw PostgresLocationError("--db-password-file \(path): the first line is empty") }
        return line
    }

    /// libpq's password file: lines `host:port:database:user:password`, `*` matching anything, `\:` and `\\` escaped.
    /// The first matching line wins; a file others may read is refused, as libpq ignores it.
    static func lookUp(passFile path: String, host: String, port: Int, database: String, user: String,
                       required: Bool) throws(PostgresLocationError) -> String? {
        guard FileManager.default.fileExists(atPath: path) else {
            if required { throw PostgresLocationError("PGPASSFILE \(path): no such file") }
            return nil
        }
        try checkPrivate(path, what: "password file")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw PostgresLocationError("password file \(path): cannot be read") }
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = splitPassLine(String(line))
            guard fields.count == 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }

    static func splitPassLine(_ line: String) -> [String] {
        var fields: [String] = []
        var current = ""
        var escaped = false
        for c in line {
            if escaped { current.append(c); escaped = false } else if c == "\\" { escaped = true } else if c == ":" && fields.count < 4 {
                fields.append(current)
                current = ""
            } else { current.append(c) }
        }
        fields.append(current)
        return fields
    }

    private static func checkPrivate(_ path: String, what: String) throws(PostgresLocationError) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue else {
            throw PostgresLocationError("\(what) \(path): cannot be read")
        }
        if mode & 0o077 != 0 {
            throw PostgresLocationError("\(what) \(path) may be read by others (mode \(String(mode, radix: 8))): chmod 600 it")
        }
    }
}

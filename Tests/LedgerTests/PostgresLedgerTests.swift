import Foundation
import Ledger
import LedgerPostgres
import Signing
import Testing
import TestSupport

/// The URL, its password sources, and how the PostgreSQL ledger fails: each failure names what was wrong.
@Suite(.timeLimit(.minutes(5))) struct PostgresLocationTests {
    @Test func aURLGivesUserHostPortDatabaseAndTLSMode() throws {
        let l = try PostgresLocation(url: "postgresql://settle%40fleet:s3cret@db.example:6543/ledger?sslmode=require", environment: [:])
        #expect(l.user == "settle@fleet" && l.password == "s3cret" && l.host == "db.example" && l.port == 6543 && l.database == "ledger")
        #expect(l.tls == .require && l.description == "postgresql://settle@fleet@db.example:6543/ledger?sslmode=require")
        let d = try PostgresLocation(url: "postgres://u@h/db", environment: [:])
        #expect(d.port == 5432 && d.tls == .prefer && d.password == nil && !d.description.contains("sslmode"))
    }

    @Test(arguments: [
        ("postgresql://h:5432/db", "no user"),
        ("postgresql://u@:5432/db", "no host"),
        ("postgresql://u@h:5432/", "no database"),
        ("postgresql://u@h:0/db", "port 0"),
        ("postgresql://u@h/db?sslmode=maybe", "sslmode 'maybe'"),
        ("postgresql://u@h/db?options=x", "unknown URL parameter 'options'"),
        ("postgresql://u@h/db?sslrootcert=/ca.pem", "only read with sslmode=verify-full"),
        ("mysql://u@h/db", "not a PostgreSQL URL"),
    ]) func aBadURLSaysWhatIsWrong(url: String, expected: String) {
        #expect { try PostgresLocation(url: url, environment: [:]) } throws: { "\($0)".contains(expected) }
    }

    @Test func anErrorNeverEchoesThePassword() {
        #expect { try PostgresLocation(url: "postgresql://u:topsecret@h/db?sslmode=no", environment: [:]) } throws: { !"\($0)".contains("topsecret") }
        #expect { try PostgresLocation(url: "postgresql://u:topsecret@h:99999/db", environment: [:]) } throws: { !"\($0)".contains("topsecret") }
    }

    @Test func thePasswordComesFromTheFileThenPGPASSWORDThenThePasswordFile() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.write("pw", "from-file\nignored\n")
        chmod(file, 0o600)
        let pgpass = dir.write("pgpass", """
            # host:port:database:user:password
            other:5432:*:u:wrong
            h:5432:db:u:from\\:pgpass
            *:*:*:*:fallback
            """)
        chmod(pgpass, 0o600)
        #expect(try PostgresLocation(url: "postgresql://u@h/db", passwordFile: file, environment: ["PGPASSWORD": "env"]).password == "from-file")
        #expect(try PostgresLocation(url: "postgresql://u@h/db", environment: ["PGPASSWORD": "env", "PGPASSFILE": pgpass]).password == "env")
        #expect(try PostgresLocation(url: "postgresql://u@h/db", environment: ["PGPASSFILE": pgpass]).password == "from:pgpass")
        #expect(try PostgresLocation(url: "postgresql://x@elsewhere/db", environment: ["PGPASSFILE": pgpass]).password == "fallback")
        chmod(pgpass, 0o644)
        #expect { try PostgresLocation(url: "postgresql://u@h/db", environment: ["PGPASSFILE": pgpass]) } throws: { "\($0)".contains("chmod 600") }
        #expect { try PostgresLocation(url: "postgresql://u@h/db", environment: ["PGPASSFILE": dir.file("none")]) } throws: { "\($0)".contains("no such file") }
        chmod(file, 0o640)
        #expect { try PostgresLocation(url: "postgresql://u@h/db", passwordFile: file, environment: [:]) } throws: { "\($0)".contains("chmod 600") }
    }
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct PostgresLedgerFailureTests {
    let key = SigningKey.generate(.eddsa)

    func location(_ server: PostgresServer, _ url: String) throws -> PostgresLocation {
        try PostgresLocation(url: url, passwordFile: server.passwordFile, environment: [:])
    }

    @Test func aWrongPasswordAMissingDatabaseAndNoServerAreClearErrors() async throws {
        let server = try PostgresServer.shared()
        let url = try server.createDatabase()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let wrong = dir.write("pw", "not-the-password")
        chmod(wrong, 0o600)
        await #expect { _ = try await PostgresLedgerStore.open(try PostgresLocation(url: url, passwordFile: wrong, environment: [:])) } throws: {
            "\($0)".contains("password authentication failed") && "\($0)".contains("SQLSTATE 28P01")
        }
        await #expect { _ = try await PostgresLedgerStore.open(try location(server, server.url(database: "no_such_db"))) } throws: {
            "\($0)".contains("does not exist")
        }
        let closed = freeLoopbackPort()
        await #expect { _ = try await PostgresLedgerStore.open(try location(server, "postgresql://metergate@127.0.0.1:\(closed)/ledger")) } throws: {
            "\($0)".contains("127.0.0.1:\(closed)") && "\($0)".lowercased().contains("connection")
        }
    }

    @Test func aDatabaseOfANewerSchemaIsRefusedAndLeftAsItWas() async throws {
        let server = try PostgresServer.shared()
        let url = try server.createDatabase()
        let database = String(url.split(separator: "/").last!)
        await try PostgresLedgerStore.open(try location(server, url)).close()
        try server.psql("INSERT INTO metergate_ledger_schema(version, name) VALUES (99, 'from the future')", database: database)
        for readOnly in [false, true] {
            await #expect { _ = try await PostgresLedgerStore.open(try location(server, url), readOnly: readOnly) } throws: {
                "\($0)".contains("schema version 99") && "\($0)".contains("newer MeterGate")
            }
        }
        #expect(try server.psql("SELECT max(version) FROM metergate_ledger_schema", database: database) == "99")
    }

    /// The server goes away mid-run and comes back: the call that met the dropped connection waits, reconnects and
    /// stores; nothing is lost or stored twice.
    @Test func aDroppedConnectionIsRetriedOnANewOne() async throws {
        let server = try PostgresServer()
        let url = try server.createDatabase("ledger")
        let store = try await PostgresLedgerStore.open(try location(server, url), reconnectWindow: .seconds(60))
        var stream = try SignedStream(key: key)
        try stream.next(3)
        _ = try await store.add(try verified(stream.records[0], key: key), envelope: stream.records[0].bytes, receivedMillis: 1)
        server.stop()
        let restart = Task.detached {
            try await Task.sleep(for: .seconds(2))
            try server.start()
        }
        #expect(try await store.add(try verified(stream.records[1], key: key), envelope: stream.records[1].bytes, receivedMillis: 2) == .stored(chainProblems: []))
        try await restart.value
        #expect(try await store.add(try verified(stream.records[2], key: key), envelope: stream.records[2].bytes, receivedMillis: 3) == .stored(chainProblems: []))
        #expect(try await store.rows().map(\.seq) == [1, 2, 3])
        await store.close()
        // A window too short for the outage: a clear error naming the call, not a hang.
        let short = try await PostgresLedgerStore.open(try location(server, url), reconnectWindow: .milliseconds(500))
        server.stop()
        await #expect { _ = try await short.counts() } throws: { "\($0)".contains("counting the ledger's tables") }
        await short.close()
    }
}

/// TLS as the server asks: `prefer` and `require` encrypt, `verify-full` also checks the server's certificate
/// against the CA given, and a server signed by another CA is refused with the reason.
@Suite(.serialized, .timeLimit(.minutes(5))) struct PostgresTLSTests {
    @Test func theLedgerSpeaksTLSAndChecksTheServerWhenAsked() async throws {
        let pki = try TestPKI()
        defer { pki.dir.cleanup() }
        // The server's key must belong to the server's user and be private: copies in a directory it owns.
        let files = TemporaryDirectory("pg-tls")
        defer { files.cleanup() }
        for name in ["server.crt", "server.key"] {
            try FileManager.default.copyItem(atPath: pki.dir.file(name), toPath: files.file(name))
            chmod(files.file(name), 0o600)
        }
        if getuid() == 0 { _ = try runProcess("/bin/chown", ["-R", "postgres:postgres", files.path]) }
        chmod(files.path, 0o755)
        let server = try PostgresServer(settings: ["ssl=on", "ssl_cert_file=\(files.file("server.crt"))", "ssl_key_file=\(files.file("server.key"))"])
        _ = try server.createDatabase("ledger")
        func open(_ query: String) async throws -> PostgresLedgerStore {
            try await PostgresLedgerStore.open(try PostgresLocation(url: server.url(database: "ledger") + query, passwordFile: server.passwordFile,
                                                                    environment: [:]))
        }
        let sessions = "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = 'ledger' AND "
        for query in ["?sslmode=require", "", "?sslmode=verify-full&sslrootcert=\(pki.ca)"] {
            let store = try await open(query)
            #expect(try await store.counts().readings == 0)
            // The pool's session is still open: the server lists it as encrypted, and none as plain.
            #expect((Int(try server.psql(sessions + "s.ssl")) ?? 0) >= 1, "\(query)")
            #expect(try server.psql(sessions + "NOT s.ssl") == "0", "\(query)")
            await store.close()
        }
        await #expect { _ = try await open("?sslmode=verify-full&sslrootcert=\(pki.otherCA)") } throws: {
            "\($0)".contains("opening") && "\($0)".lowercased().contains("certificate")
        }
    }
}

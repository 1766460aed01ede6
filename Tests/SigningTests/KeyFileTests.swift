import Foundation
import Signing
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct KeyFileTests {
    @Test(arguments: SigningAlgorithm.allCases)
    func writesMode0600AndReadsBack(_ algorithm: SigningAlgorithm) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let key = SigningKey.generate(algorithm)
        try KeyFile.write(key, to: dir.file("k.pem"))
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.file("k.pem"))
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let loaded = try KeyFile.load(dir.file("k.pem"))
        #expect(loaded.publicKey == key.publicKey)
        let message = Array("reading".utf8)
        #expect(loaded.publicKey.isValidSignature(try key.sign(message), for: message))
        #expect(!loaded.publicKey.isValidSignature(try key.sign(message), for: Array("readinG".utf8)))
    }

    @Test func refusesAKeyOthersCanRead() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try KeyFile.write(.generate(.eddsa), to: dir.file("k.pem"))
        chmod(dir.file("k.pem"), 0o644)
        let error = #expect(throws: KeyFileError.self) { try KeyFile.load(dir.file("k.pem")) }
        #expect(error == .tooOpen(path: dir.file("k.pem"), mode: 0o644))
        #expect(error?.description.contains("chmod 600") == true)
    }

    @Test func refusesWhatIsNotAWholeKeyFileOfTheConfiguredAlgorithm() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try KeyFile.write(.generate(.eddsa), to: dir.file("k.pem"))
        let pem = try String(contentsOfFile: dir.file("k.pem"), encoding: .utf8)
        func file(_ name: String, _ text: String) -> String {
            let path = dir.write(name, text)
            chmod(path, 0o600)
            return path
        }
        let truncated = file("cut.pem", String(pem.prefix(pem.count / 2)))
        #expect(throws: KeyFileError.inFile(path: truncated, underlying: KeyFileError.truncatedPEM.description)) { try KeyFile.load(truncated) }
        let empty = file("empty.pem", "")
        #expect(throws: KeyFileError.inFile(path: empty, underlying: "the file is empty")) { try KeyFile.load(empty) }
        let garbage = file("junk.pem", "not a key\n")
        #expect(throws: KeyFileError.inFile(path: garbage, underlying: KeyFileError.notPEM.description)) { try KeyFile.load(garbage) }
        try FileManager.default.createDirectory(atPath: dir.file("d.pem"), withIntermediateDirectories: false)
        chmod(dir.file("d.pem"), 0o700)
        let directory = #expect(throws: KeyFileError.self) { try KeyFile.load(dir.file("d.pem")) }
        #expect(directory == .notAFile(path: dir.file("d.pem"), kind: "a directory"))
        #expect(directory?.description == "key file \(dir.file("d.pem")) is a directory, not a key file")
        #expect(throws: KeyFileError.wrongAlgorithm(path: dir.file("k.pem"), found: .eddsa, configured: .es256)) {
            try KeyFile.load(dir.file("k.pem"), algorithm: .es256)
        }
        #expect(try KeyFile.load(dir.file("k.pem"), algorithm: .eddsa).algorithm == .eddsa)
    }

    @Test func neverOverwritesAKey() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try KeyFile.write(.generate(.eddsa), to: dir.file("k.pem"))
        #expect(throws: KeyFileError.exists(path: dir.file("k.pem"))) { try KeyFile.write(.generate(.eddsa), to: dir.file("k.pem")) }
    }

    @Test func keyIDIsTheRFC7638Thumbprint() throws {
        // RFC 8037 appendix A.3: the thumbprint of the Ed25519 example key.
        let x = Base64URL.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")!
        let key = try VerifyingKey(spkiDER: [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00] + x)
        #expect(key.keyID == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
    }
}

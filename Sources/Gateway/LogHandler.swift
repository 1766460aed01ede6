import Foundation
import Logging
import Synchronization

/// One line per event. On a terminal or a pipe: a readable line with a local-time stamp. Under systemd
/// (`$JOURNAL_STREAM` set: stderr goes to the journal): the line starts with the syslog priority in angle
/// brackets, which journald turns into the entry's priority, and carries no timestamp (journald adds one).
public struct GatewayLogHandler: LogHandler {
    /// The process-wide level, changed at run time by a SIGHUP reload.
    public static let processLevel = Mutex<Logger.Level>(.info)

    /// A level set on one logger wins over the process-wide one.
    private var localLevel: Logger.Level?
    public var logLevel: Logger.Level {
        get { localLevel ?? Self.processLevel.withLock { $0 } }
        set { localLevel = newValue }
    }
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let journald: Bool

    public init(label: String, level: Logger.Level? = nil, journald: Bool = GatewayLogHandler.stderrIsJournal()) {
        self.label = label
        self.localLevel = level
        self.journald = journald
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quote("\($0.value)"))" }.joined(separator: " ")
        let text = "\(event.message)".replacingOccurrences(of: "\n", with: " ⏎ ")
        let line: String
        if journald {
            line = "<\(Self.priority(event.level))>\(label): \(text)\(fields.isEmpty ? "" : " " + fields)\n"
        } else {
            line = "\(Self.timestamp()) \(event.level.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0)) \(label): \(text)\(fields.isEmpty ? "" : " " + fields)\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func quote(_ s: String) -> String {
        s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) ? "\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\"" : s
    }

    /// syslog priorities (RFC 5424) for swift-log's levels.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var t = time(nil)
        var parts = tm()
        localtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%H:%M:%S", &parts)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether stderr is connected to journald: systemd sets `JOURNAL_STREAM` to "device:inode" of that
    /// stream, which must match stderr's own (a child that inherited the variable but not the stream is not).
    public static func stderrIsJournal() -> Bool {
        guard let value = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return value == "\(info.st_dev):\(info.st_ino)"
    }

    /// Installs this handler for the whole process, once.
    public static func bootstrap(level: Logger.Level) {
        processLevel.withLock { $0 = level }
        LoggingSystem.bootstrap { GatewayLogHandler(label: $0) }
    }
}

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
        // Built in one string and written with one write(2): the pipeline logs a line per signed record.
        var line: String
        if journald {
            line = "<\(Self.priority(event.level))>"
        } else {
            line = Self.timestamp()
            line += " "
            line += Self.paddedName(event.level)
            line += " "
        }
        line += label
        line += ": "
        let message = event.message.description
        line += message.utf8.contains(UInt8(ascii: "\n")) ? message.replacingOccurrences(of: "\n", with: " ⏎ ") : message
        var fields = metadata
        if let extra = event.metadata {
            if fields.isEmpty { fields = extra } else { fields.merge(extra) { $1 } }
        }
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            line += " "
            line += key
            line += "="
            line += Self.quote(value.description)
        }
        line += "\n"
        Self.writeToStandardError(line)
    }

    static func quote(_ s: String) -> String {
        s.utf8.contains(where: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "=") })
            ? "\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\"" : s
    }

    /// The level's name cut or padded to 7 characters, so messages line up.
    static func paddedName(_ level: Logger.Level) -> String {
        switch level {
        case .trace: return "trace  "
        case .debug: return "debug  "
        case .info: return "info   "
        case .notice: return "notice "
        case .warning: return "warning"
        case .error: return "error  "
        case .critical: return "critica"
        }
    }

    /// Writes the whole line to stderr (`write(2)`, again after a partial write or EINTR); a failed write
    /// drops the line, as there is nowhere to report it.
    static func writeToStandardError(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            guard var next = bytes.baseAddress else { return }
            var left = bytes.count
            while left > 0 {
                let n = write(STDERR_FILENO, next, left)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                next += n
                left -= n
            }
        }
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

    /// The local time of day, `HH:MM:SS`; made again only when the second changes.
    static func timestamp() -> String {
        var t = time(nil)
        if let cached = lastTimestamp.withLock({ $0.time == t ? $0.text : nil }) { return cached }
        var parts = tm()
        localtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%H:%M:%S", &parts)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        lastTimestamp.withLock { $0 = (t, text) }
        return text
    }

    private static let lastTimestamp = Mutex<(time: time_t, text: String)>((-1, ""))

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

internal import CGPIOD
#if canImport(Glibc)
import Glibc
#endif

/// A failed libgpiod call: the C function, errno, and the chip or line concerned.
public struct GPIOError: Error, Hashable, Sendable, CustomStringConvertible {
    public let function: String
    public let code: Int32
    public let context: String

    public init(function: String, code: Int32, context: String) {
        self.function = function
        self.code = code
        self.context = context
    }

    public var description: String {
        var hint = ""
        if code == ENOENT { hint = "; no such GPIO chip (is the board file right? `gpiodetect` lists chips)" }
        if code == EACCES { hint = "; permission denied (the service user needs the gpio group)" }
        if code == EBUSY { hint = "; the line is already requested by another consumer" }
        if code == EINVAL { hint = "; no such line offset on this chip" }
        return "\(function) failed for \(context): \(String(cString: strerror(code))) [errno \(code)]\(hint)"
    }
}

/// The libgpiod version string. The corresponding C function is `gpiod_version_string`.
public var libgpiodVersion: String { String(cString: gpiod_version_string()) }

/// An open GPIO chip (`/dev/gpiochipN`).
public final class GPIOChip {
    private let handle: OpaquePointer
    public let name: String
    public let label: String
    public let lineCount: Int

    /// Opens a chip by name ("gpiochip0"), path ("/dev/gpiochip0"), label or number.
    /// The corresponding C function is `gpiod_chip_open_lookup`.
    public init(_ nameOrPath: String) throws(GPIOError) {
        guard let chip = gpiod_chip_open_lookup(nameOrPath) else {
            throw GPIOError(function: "gpiod_chip_open_lookup", code: CGPIOD_errno(), context: "chip '\(nameOrPath)'")
        }
        self.handle = chip
        self.name = String(cString: gpiod_chip_name(chip))
        self.label = String(cString: gpiod_chip_label(chip))
        self.lineCount = Int(gpiod_chip_num_lines(chip))
    }

    deinit { gpiod_chip_close(handle) }

    /// Checks that `offset` exists on this chip. The corresponding C function is `gpiod_chip_get_line`.
    public func checkLine(_ offset: Int) throws(GPIOError) {
        guard offset >= 0, offset < lineCount, gpiod_chip_get_line(handle, UInt32(offset)) != nil else {
            throw GPIOError(function: "gpiod_chip_get_line", code: EINVAL, context: "line \(offset) of \(name) (\(lineCount) lines)")
        }
    }
}

/// One line of a chip, requested from libgpiod: the chip and line handles, released and closed together when
/// the last owner lets go. `@unchecked Sendable`: the handles are set once; each owner says who may use them.
final class RequestedGPIOLine: @unchecked Sendable {
    let chip: OpaquePointer
    let line: OpaquePointer
    let chipName: String
    let offset: Int

    /// Opens `chipName` (name, path, label or number), gets line `offset` and requests it with `request`, the
    /// libgpiod call named `function` (0 on success). The corresponding C functions are `gpiod_chip_open_lookup`,
    /// `gpiod_chip_get_line` and `function`.
    init(chip chipName: String, offset: Int, function: String, request: (OpaquePointer) -> Int32) throws(GPIOError) {
        guard let chip = gpiod_chip_open_lookup(chipName) else {
            throw GPIOError(function: "gpiod_chip_open_lookup", code: CGPIOD_errno(), context: "chip '\(chipName)'")
        }
        let lineCount = Int(gpiod_chip_num_lines(chip))
        guard offset >= 0, offset < lineCount, let line = gpiod_chip_get_line(chip, UInt32(offset)) else {
            let code = offset >= 0 && offset < lineCount ? CGPIOD_errno() : EINVAL
            gpiod_chip_close(chip)
            throw GPIOError(function: "gpiod_chip_get_line", code: code, context: "line \(offset) of chip '\(chipName)' (\(lineCount) lines)")
        }
        guard request(line) == 0 else {
            let code = CGPIOD_errno()
            gpiod_chip_close(chip)
            throw GPIOError(function: function, code: code, context: "line \(offset) of chip '\(chipName)'")
        }
        self.chip = chip
        self.line = line
        self.chipName = chipName
        self.offset = offset
    }

    deinit {
        gpiod_line_release(line)
        gpiod_chip_close(chip)
    }
}

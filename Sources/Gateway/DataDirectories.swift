import Foundation

/// Where board files and meter profiles are found: `$METERGATE_DATA_DIR`, then the working directory (a
/// source checkout), then the directory next to the executable's `../share/metergate`, then `/usr/share/metergate`.
public enum DataDirectories {
    public static func candidates(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var roots: [String] = []
        if let dir = environment["METERGATE_DATA_DIR"], !dir.isEmpty { roots.append(dir) }
        roots.append(FileManager.default.currentDirectoryPath)
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        roots.append(executable.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("share/metergate").path)
        roots.append("/usr/share/metergate")
        return roots
    }

    /// Existing `boards/` directories, in search order.
    public static func boards(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        existing(candidates(environment: environment).map { "\($0)/boards" })
    }

    /// Existing `profiles/` directories. The first one found wins as the built-in set.
    public static func profiles(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        existing(candidates(environment: environment).map { "\($0)/profiles" }).prefix(1).map { $0 }
    }

    private static func existing(_ paths: [String]) -> [String] {
        var seen = Set<String>()
        return paths.filter { var d: ObjCBool = false; return FileManager.default.fileExists(atPath: $0, isDirectory: &d) && d.boolValue && seen.insert($0).inserted }
    }
}

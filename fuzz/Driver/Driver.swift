// metergate-fuzz: the fuzz targets of fuzz/FuzzTargets behind two drivers.
//
// Built by fuzz/run.sh with `-sanitize=fuzzer,address -D FUZZING`, this file is a libFuzzer target: libFuzzer
// provides main() and calls LLVMFuzzerTestOneInput; METERGATE_FUZZ_TARGET names the target. Built normally
// (`swift build --product metergate-fuzz`), it is a seeded mutation fuzzer over the same targets:
//
//     metergate-fuzz TARGET [--seconds N | --iterations N] [--seed S] [CORPUS_DIR...]
//
// which stops at the first crash after writing the input to fuzz-crash-TARGET.bin in the current directory.
import Foundation
import FuzzTargets

#if canImport(Glibc)
import Glibc
#endif

/// The repository this binary was built from (for profiles, boards and test vectors), or METERGATE_REPOSITORY.
let repositoryRoot: String = ProcessInfo.processInfo.environment["METERGATE_REPOSITORY"]
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// Writes a line to standard error.
func complain(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

#if FUZZING

/// The target METERGATE_FUZZ_TARGET names; built once, on the first input.
let target: any FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["METERGATE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.named(name, repositoryRoot: repositoryRoot) else {
        let names = FuzzTargets.all(repositoryRoot: repositoryRoot).map(\.name).joined(separator: ", ")
        complain("metergate-fuzz: set METERGATE_FUZZ_TARGET to one of: \(names)")
        exit(2)
    }
    return target
}()

/// libFuzzer's driver (in libclang_rt.fuzzer), for the entry point below.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The program's entry point. SwiftPM links an executable with `main` defined as `<module>_main`, so
/// libFuzzer's own main() is never linked in; this one hands the command line to libFuzzer's driver.
@_cdecl("metergate_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) }
}

/// libFuzzer calls this once before the first input. With METERGATE_FUZZ_SEEDS_TO=DIR it only writes the
/// target's seed corpus (real profiles, configs, test vectors) into DIR and exits: fuzz/run.sh starts from it.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    guard let dir = ProcessInfo.processInfo.environment["METERGATE_FUZZ_SEEDS_TO"] else { return 0 }
    for (i, seed) in target.seeds(repositoryRoot: repositoryRoot).enumerated() {
        FileManager.default.createFile(atPath: "\(dir)/seed-\(i)", contents: Data(seed))
    }
    exit(0)
}

/// libFuzzer's entry point: one input; a finding is a crash, so libFuzzer saves the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let problems = target.run(input)
    if !problems.isEmpty { fatalError("\(target.name): \(problems.joined(separator: "; "))") }
    return 0
}

#else

/// The input being run, for the crash handler (written only between runs, read only when a run traps).
nonisolated(unsafe) var crashInput = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 1 << 20)
nonisolated(unsafe) var crashInputCount = 0
nonisolated(unsafe) var crashPath: UnsafeMutablePointer<CChar>? = nil

@main
struct MeterGateFuzz {
    static func main() {
        var args = Array(CommandLine.arguments.dropFirst())
        let all = FuzzTargets.all(repositoryRoot: repositoryRoot)
        guard let name = args.first, let target = all.first(where: { $0.name == name }) else {
            complain("usage: metergate-fuzz TARGET [--seconds N | --iterations N] [--seed S] [CORPUS_DIR...]\n"
                     + "targets: \(all.map(\.name).joined(separator: ", "))")
            exit(2)
        }
        args.removeFirst()
        var seconds = 60.0, iterations: Int?, seed = UInt64(UInt32(truncatingIfNeeded: time(nil))), directories: [String] = []
        while let arg = args.first {
            args.removeFirst()
            switch arg {
            case "--seconds": seconds = Double(args.removeFirst()) ?? seconds
            case "--iterations": iterations = Int(args.removeFirst())
            case "--seed": seed = UInt64(args.removeFirst()) ?? seed
            default: directories.append(arg)
            }
        }
        var corpus = target.seeds(repositoryRoot: repositoryRoot) + FuzzTargets.corpus(of: target, repositoryRoot: repositoryRoot)
        for dir in directories {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
            corpus += names.compactMap { FileManager.default.contents(atPath: "\(dir)/\($0)").map { [UInt8]($0) } }
        }
        crashPath = strdup("fuzz-crash-\(target.name).bin")
        for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE] {
            signal(sig) { sig in
                let fd = open(crashPath!, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                if fd >= 0 { _ = write(fd, crashInput.baseAddress, crashInputCount); close(fd) }
                signal(sig, SIG_DFL)
                raise(sig)
            }
        }
        print("metergate-fuzz \(target.name): seed \(seed), \(corpus.count) corpus inputs, "
              + (iterations.map { "\($0) inputs" } ?? "\(seconds) s"))
        var fuzzer = SeededFuzzer(seed: seed, corpus: corpus)
        let start = Date()
        var runs = 0, findings = 0
        repeat {
            let count = min(1000, (iterations ?? .max) - runs)
            let batch = fuzzer.run(target, iterations: count, from: runs) { input in
                crashInputCount = min(input.count, crashInput.count)
                _ = UnsafeMutableBufferPointer(rebasing: crashInput[..<crashInputCount]).initialize(from: input.prefix(crashInputCount))
            }
            runs += count
            for f in batch { print("finding: \(f)") }
            findings += batch.count
        } while runs < (iterations ?? .max) && (iterations != nil || Date().timeIntervalSince(start) < seconds)
        print("metergate-fuzz \(target.name): \(runs) inputs in \(String(format: "%.1f", Date().timeIntervalSince(start))) s, \(findings) findings")
        exit(findings == 0 ? 0 : 1)
    }
}

#endif

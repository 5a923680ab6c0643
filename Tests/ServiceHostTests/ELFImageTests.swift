import Foundation
import Testing

@testable import ServiceHost

@Suite("ELF image inspection")
struct ELFImageTests {
    // MARK: Real images

    @Test("a C shared object passes and has no Swift code")
    func cSharedObject() async throws {
        let bytes = try await Fixture.c()
        let image = try inspect(bytes).get()
        #expect(image == ELFImage(containsSwiftCode: false))
    }

    @Test("a Swift shared object passes and contains Swift code")
    func swiftSharedObject() async throws {
        let bytes = try await Fixture.swift()
        let image = try inspect(bytes).get()
        #expect(image == ELFImage(containsSwiftCode: true))
    }

    @Test("Swift is found through DT_NEEDED libswiftCore.so when there are no section headers")
    func swiftWithoutSectionHeaders() async throws {
        var bytes = try await Fixture.swift()
        bytes.dropSectionHeaders()
        let image = try inspect(bytes).get()
        #expect(image.containsSwiftCode)
    }

    @Test("Swift is found through swift5_ section names when nothing needs libswiftCore.so")
    func swiftFromSectionsAlone() async throws {
        var bytes = try await Fixture.swift()
        let needle = Array("libswiftCore.so".utf8)
        let found = bytes.firstRange(of: needle)
        let at = try #require(found, "the Swift image names libswiftCore.so")
        bytes[at.upperBound - 4] = UInt8(ascii: "X")  // libswiftCorX.so
        let image = try inspect(bytes).get()
        #expect(image.containsSwiftCode)

        bytes.dropSectionHeaders()
        let stripped = try inspect(bytes).get()
        #expect(stripped.containsSwiftCode == false)
    }

    @Test("a C shared object without section headers still passes")
    func cWithoutSectionHeaders() async throws {
        var bytes = try await Fixture.c()
        bytes.dropSectionHeaders()
        let image = try inspect(bytes).get()
        #expect(image == ELFImage(containsSwiftCode: false))
    }

    // MARK: Truncation

    @Test("every proper prefix of a shared object is rejected")
    func everyPrefixIsRejected() async throws {
        let bytes = try await Fixture.c()
        var failures: [String] = []
        bytes.withUnsafeBytes { whole in
            for length in 0..<whole.count {
                let prefix = UnsafeRawBufferPointer(rebasing: whole[0..<length])
                let expected: PluginError.Code = length == 0 ? .notSharedObject : .truncated
                switch Result(catching: { () throws(PluginError) in try ELFImage.inspect(prefix, file: "plugin.so") }) {
                case .success:
                    failures.append("\(length) bytes: accepted")
                case .failure(let error) where error.code != expected:
                    failures.append("\(length) bytes: \(error.code): \(error.reason)")
                case .failure:
                    break
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.count) prefixes misjudged, first: \(failures.prefix(5))")
    }

    @Test("a prefix ending inside the last loadable segment names that segment")
    func prefixInsideLastSegment() async throws {
        let bytes = try await Fixture.c()
        let lastLoad = bytes.segments()?.last { $0.type == Segment.load }
        let last = try #require(lastLoad)
        let end = Int(last.offset + last.fileSize)

        let inside = try rejection(of: Array(bytes[..<(end - 1)]))
        #expect(inside.code == .truncated)
        #expect(inside.reason == "truncated: loadable segment \(last.index) ends at byte \(end) but the file has \(end - 1) bytes")

        // Everything the loader maps is there, but the section headers after it are not.
        let atBoundary = try rejection(of: Array(bytes[..<end]))
        #expect(atBoundary.code == .truncated)
        #expect(atBoundary.reason.contains("section"))
    }

    @Test("a prefix shorter than the ELF header or its program headers says so")
    func prefixInsideHeaders() async throws {
        let bytes = try await Fixture.c()

        let header = try rejection(of: Array(bytes[..<20]))
        #expect(header.code == .truncated)
        #expect(header.reason.contains("ELF header"))

        let table = try rejection(of: Array(bytes[..<100]))
        #expect(table.code == .truncated)
        #expect(table.reason.contains("program header table"))
    }

    // MARK: Not shared objects

    @Test("an empty file is not a shared object")
    func emptyFile() throws {
        let error = try rejection(of: [])
        #expect(error.code == .notSharedObject)
        #expect(error.reason == "empty file")
        #expect(error.file == "plugin.so")
    }

    @Test("a shell script is not a shared object")
    func textFile() throws {
        let error = try rejection(of: Array("#!/bin/sh\necho hi\n".utf8))
        #expect(error.code == .notSharedObject)
        #expect(error.reason == "not an ELF file (starts with 23 21 2f 62)")
    }

    @Test("random bytes are not a shared object")
    func randomBytes() throws {
        var generator = SplitMix64(seed: 0x5EED_0001)
        let bytes = (0..<4096).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let error = try rejection(of: bytes)
        #expect(error.code == .notSharedObject)
        #expect(error.reason.hasPrefix("not an ELF file"))
    }

    @Test("a non-PIE executable is not a shared object")
    func executable() async throws {
        let directory = try TemporaryDirectory("elf-image")
        let source = directory.file("main.c")
        try "int main(void) { return 0; }\n".write(to: source, atomically: true, encoding: .utf8)
        let program = directory.file("main")
        try await Blocking.run { try PluginBuilder.run(["cc", "-no-pie", "-o", program.path, source.path]) }
        let error = try rejection(of: Array(try Data(contentsOf: program)))
        #expect(error.code == .notSharedObject)
        #expect(error.reason == "ELF executable, not a shared object")
    }

    // MARK: Corrupted headers

    @Test("corrupted headers are rejected with a reason", arguments: HeaderPatch.all)
    func corruptedHeader(_ patch: HeaderPatch) async throws {
        var bytes = try await Fixture.c()
        try patch.apply(&bytes)
        let error = try rejection(of: bytes)
        #expect(error.code == patch.code, "\(error.reason)")
        for fragment in patch.reasonMentions {
            #expect(error.reason.contains(fragment), "\(error.reason)")
        }
    }

    @Test("single-byte corruption of the headers never crashes or admits a segment past the end")
    func fuzzSingleBytes() async throws {
        let original = try await Fixture.c()
        let regions = original.headerOffsets()
        let offsets = try #require(regions)
        var generator = SplitMix64(seed: 0xE1F_F022)
        for _ in 0..<2_000 {
            var bytes = original
            let offset = offsets.randomElement(using: &generator)!
            bytes[offset] ^= UInt8.random(in: 1 ... .max, using: &generator)
            try expectSafeVerdict(bytes, mutatedAt: offset)
        }
    }

    @Test("word-sized corruption of the headers never crashes or admits a segment past the end")
    func fuzzWords() async throws {
        let original = try await Fixture.c()
        let regions = original.headerOffsets()
        let offsets = try #require(regions)
        var generator = SplitMix64(seed: 0xE1F_F064)
        // Whole random words reach the huge values that single bytes rarely do.
        let words: [UInt64] = [0, 1, .max, .max - 0xFFFF, 1 << 63, UInt64(original.count), UInt64(original.count) + 1]
        for _ in 0..<2_000 {
            var bytes = original
            let offset = Swift.min(offsets.randomElement(using: &generator)! & ~7, original.count - 8)
            let word = generator.next() & 1 == 0 ? words.randomElement(using: &generator)! : generator.next()
            bytes.store(word, at: offset)
            try expectSafeVerdict(bytes, mutatedAt: offset)
        }
    }

    /// An accepted image must have every loadable segment inside the file;
    /// a rejected one must say so with a plugin error.
    private func expectSafeVerdict(_ bytes: [UInt8], mutatedAt offset: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard case .success = inspect(bytes) else { return }
        let readable = bytes.segments()
        let segments = try #require(readable, "accepted an image whose program headers are unreadable (byte \(offset))", sourceLocation: sourceLocation)
        for segment in segments where segment.type == Segment.load {
            let (end, overflow) = segment.offset.addingReportingOverflow(segment.fileSize)
            #expect(!overflow && end <= UInt64(bytes.count), "accepted segment \(segment.index) past the end (byte \(offset))", sourceLocation: sourceLocation)
        }
    }
}

// MARK: - Helpers

private func inspect(_ bytes: [UInt8]) -> Result<ELFImage, PluginError> {
    bytes.withUnsafeBytes { buffer in
        Result { () throws(PluginError) in try ELFImage.inspect(buffer, file: "plugin.so") }
    }
}

/// The error `bytes` are rejected with; records an issue when they are accepted.
private func rejection(of bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> PluginError {
    // Kept out of #require's expression so that a failure does not print every byte.
    let error: PluginError? = if case .failure(let error) = inspect(bytes) { error } else { nil }
    return try #require(error, "\(bytes.count) bytes were accepted", sourceLocation: sourceLocation)
}

extension ELFImageTests {
    /// The fixture images, built once for the whole suite, on a thread of
    /// their own: a Swift build takes seconds, which would hold one of the
    /// cooperative pool's two threads (and the suite's other tests, waiting
    /// for the same build, the other).
    fileprivate enum Fixture {
        static func c() async throws -> [UInt8] { try await Blocking.run { try cLibrary.get() } }
        static func swift() async throws -> [UInt8] { try await Blocking.run { try swiftLibrary.get() } }

        private static let cLibrary = Result { () throws -> [UInt8] in
            let directory = try TemporaryDirectory("elf-image")
            let library = try PluginBuilder.buildC("elf_minimal.c", to: directory.file("libelf_minimal.so"))
            return Array(try Data(contentsOf: library))
        }

        private static let swiftLibrary = Result { () throws -> [UInt8] in
            let directory = try TemporaryDirectory("elf-image")
            let library = try PluginBuilder.buildSwift(
                "elf_swift.swift", to: directory.file("libelf_swift.so"), moduleName: "ELFSwift")
            return Array(try Data(contentsOf: library))
        }
    }

    /// A program header as the tests see it: where its entry is, and what it says.
    fileprivate struct Segment {
        static let load: UInt32 = 1  // PT_LOAD
        static let dynamic: UInt32 = 2  // PT_DYNAMIC

        let index: Int
        let entry: Int
        let type: UInt32
        let offset: UInt64
        let fileSize: UInt64
    }

    /// One way of breaking the C fixture's headers, and what the host must say about it.
    struct HeaderPatch: Sendable, CustomTestStringConvertible {
        let name: String
        let code: PluginError.Code
        let reasonMentions: [String]
        let apply: @Sendable (inout [UInt8]) throws -> Void

        var testDescription: String { name }

        #if arch(x86_64)
        static let foreignMachine = (number: UInt16(183), mentions: ["machine 183 (AArch64)", "this host is x86-64"])
        #else
        static let foreignMachine = (number: UInt16(62), mentions: ["machine 62 (x86-64)", "this host is AArch64"])
        #endif

        static let all: [HeaderPatch] = [
            HeaderPatch(name: "foreign machine", code: .incompatibleImage, reasonMentions: foreignMachine.mentions) { bytes in
                bytes.store(foreignMachine.number, at: 18)
            },
            HeaderPatch(name: "32-bit class", code: .incompatibleImage, reasonMentions: ["32-bit"]) { bytes in
                bytes[4] = 1
            },
            HeaderPatch(name: "big-endian", code: .incompatibleImage, reasonMentions: ["big-endian"]) { bytes in
                bytes[5] = 2
            },
            HeaderPatch(name: "relocatable object", code: .notSharedObject, reasonMentions: ["relocatable", "not a shared object"]) { bytes in
                bytes.store(UInt16(1), at: 16)
            },
            HeaderPatch(name: "program header entry size", code: .notSharedObject, reasonMentions: ["program header entries are 40 bytes"]) { bytes in
                bytes.store(UInt16(40), at: 54)
            },
            HeaderPatch(name: "program headers far away", code: .truncated, reasonMentions: ["program header table"]) { bytes in
                bytes.store(UInt64.max - 100, at: 32)
            },
            HeaderPatch(name: "segment offset huge", code: .truncated, reasonMentions: ["loadable segment", "ends at byte"]) { bytes in
                let load = try bytes.segment { $0.type == Segment.load }
                bytes.store(UInt64(0xFFFF_FFFF_FFFF_0000), at: load.entry + 8)
            },
            HeaderPatch(name: "segment end overflows", code: .truncated, reasonMentions: ["loadable segment", "past the end"]) { bytes in
                let load = try bytes.segment { $0.type == Segment.load }
                bytes.store(UInt64(0xFFFF_FFFF_FFFF_0000), at: load.entry + 8)
                bytes.store(UInt64(0x2_0000), at: load.entry + 32)  // p_filesz
                bytes.store(UInt64(0x2_0000), at: load.entry + 40)  // p_memsz
            },
            HeaderPatch(name: "segment larger in file than in memory", code: .notSharedObject, reasonMentions: ["loadable segment", "in memory"]) { bytes in
                let load = try bytes.segment { $0.type == Segment.load && $0.fileSize > 0 }
                bytes.store(load.fileSize - 1, at: load.entry + 40)
            },
            HeaderPatch(name: "dynamic segment past the end", code: .truncated, reasonMentions: ["dynamic segment"]) { bytes in
                let dynamic = try bytes.segment { $0.type == Segment.dynamic }
                bytes.store(UInt64(bytes.count), at: dynamic.entry + 8)
            },
            HeaderPatch(name: "no dynamic segment", code: .notSharedObject, reasonMentions: ["dynamic segment"]) { bytes in
                let dynamic = try bytes.segment { $0.type == Segment.dynamic }
                bytes.store(UInt32(0), at: dynamic.entry)  // PT_NULL
            },
            HeaderPatch(name: "section headers far away", code: .truncated, reasonMentions: ["section header table"]) { bytes in
                bytes.store(UInt64(bytes.count - 64), at: 40)
            },
            HeaderPatch(name: "symbol table past the end", code: .truncated, reasonMentions: ["section", "(.symtab)", "ends at byte"]) { bytes in
                let symbolTable = try bytes.sectionHeader { type in type == 2 }  // SHT_SYMTAB
                bytes.store(UInt64(bytes.count), at: symbolTable + 32)  // sh_size
            },
            HeaderPatch(name: "section count huge", code: .truncated, reasonMentions: ["section header table"]) { bytes in
                bytes.store(UInt16(0xfffe), at: 60)
            },
        ]
    }

    /// A small seeded generator, so that every run fuzzes the same inputs.
    fileprivate struct SplitMix64: RandomNumberGenerator {
        private var state: UInt64

        init(seed: UInt64) { state = seed }

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}

// Reading and patching ELF64 fields in a copy of a file, independently of the
// code under test.
extension [UInt8] {
    fileprivate typealias Segment = ELFImageTests.Segment

    fileprivate func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    fileprivate mutating func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    /// The program headers, or nil when the table does not fit in the bytes.
    fileprivate func segments() -> [Segment]? {
        guard count >= 64 else { return nil }
        let tableOffset = load(UInt64.self, at: 32)
        let number = Int(load(UInt16.self, at: 56))
        let (end, overflow) = tableOffset.addingReportingOverflow(UInt64(number * 56))
        guard !overflow, end <= UInt64(count) else { return nil }
        return (0..<number).map { index in
            let entry = Int(tableOffset) + index * 56
            return Segment(index: index, entry: entry, type: load(UInt32.self, at: entry),
                           offset: load(UInt64.self, at: entry + 8), fileSize: load(UInt64.self, at: entry + 32))
        }
    }

    /// The first program header matching `predicate`; records an issue when there is none.
    fileprivate func segment(where predicate: (Segment) -> Bool) throws -> Segment {
        let found = segments()?.first(where: predicate)
        return try #require(found)
    }

    /// Where the first section header whose sh_type matches `predicate` starts.
    fileprivate func sectionHeader(where predicate: (UInt32) -> Bool) throws -> Int {
        let table = Int(load(UInt64.self, at: 40))
        let number = Int(load(UInt16.self, at: 60))
        let found = (0..<number).map { table + $0 * 64 }.first { predicate(load(UInt32.self, at: $0 + 4)) }
        return try #require(found)
    }

    /// Offsets of the bytes the inspection reads: the ELF header, the program
    /// header table, the section header table and the dynamic segment.
    fileprivate func headerOffsets() -> [Int]? {
        guard let segments = segments(), let dynamic = segments.first(where: { $0.type == Segment.dynamic }) else { return nil }
        let programHeaders = Int(load(UInt64.self, at: 32))
        let sectionHeaders = Int(load(UInt64.self, at: 40))
        let sectionCount = Int(load(UInt16.self, at: 60))
        let dynamicStart = Int(dynamic.offset)
        let ranges: [Range<Int>] = [
            0..<(programHeaders + segments.count * 56),
            sectionHeaders..<(sectionHeaders + sectionCount * 64),
            dynamicStart..<(dynamicStart + Int(dynamic.fileSize)),
        ]
        return ranges.flatMap { $0 }
    }

    /// Clears e_shoff, e_shentsize, e_shnum and e_shstrndx, as tools that drop
    /// the section header table do.
    fileprivate mutating func dropSectionHeaders() {
        store(UInt64(0), at: 40)
        store(UInt16(0), at: 58)
        store(UInt16(0), at: 60)
        store(UInt16(0), at: 62)
    }
}

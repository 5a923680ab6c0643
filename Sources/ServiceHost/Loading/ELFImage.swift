/// What the host learned from a file's ELF headers before handing it to dlopen.
///
/// glibc maps a shared object's loadable segments straight from the file and
/// trusts the headers' offsets: when a segment reaches past the end of a
/// truncated file, the loader's first touch of that page raises SIGBUS and
/// takes the whole host down with it. The host therefore reads the complete
/// file first and lets only images whose headers fit the real file size
/// reach dlopen. Every value comes from an untrusted file, so all arithmetic
/// on it is overflow-checked and every read is bounds-checked beforehand.
struct ELFImage: Sendable, Equatable {
    /// The image contains Swift code: a section whose name starts with "swift5_", or a DT_NEEDED entry naming libswiftCore.so.
    let containsSwiftCode: Bool

    /// Validates `bytes`, the complete contents of the file at `file` (used only in error messages).
    ///
    /// Loading must never go past the end of the file, so the ELF header, the
    /// program header table, every loadable segment, the dynamic segment and,
    /// when present, the section header table and every section with file
    /// contents must lie inside `bytes`. Swift detection reads the section
    /// names and the dynamic section's `DT_NEEDED` entries; oddities there that
    /// dlopen would not trip over only mean that no Swift was found.
    static func inspect(_ bytes: UnsafeRawBufferPointer, file: String) throws(PluginError) -> ELFImage {
        let inspector = Inspector(bytes: bytes, file: file)
        try inspector.checkIdentification()
        try inspector.checkTypeAndMachine()
        let programHeaders = try inspector.programHeaders()
        try inspector.checkSegments(programHeaders)
        let sectionsNameSwift = try inspector.checkSectionsForSwift()
        let needsSwiftCore = inspector.dynamicSectionNeedsSwiftCore(programHeaders)
        return ELFImage(containsSwiftCode: sectionsNameSwift || needsSwiftCore)
    }
}

extension ELFImage {
    // The ELF64 constants the inspection needs, from <elf.h>, which the Glibc
    // module does not import.
    private enum ELF {
        static let magic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]
        static let classOffset = 4
        static let dataOffset = 5
        static let class32: UInt8 = 1
        static let class64: UInt8 = 2
        static let littleEndian: UInt8 = 1
        static let bigEndian: UInt8 = 2

        static let headerSize: UInt64 = 64
        static let programHeaderSize: UInt64 = 56
        static let sectionHeaderSize: UInt64 = 64
        static let dynamicEntrySize: UInt64 = 16

        static let typeRelocatable: UInt16 = 1
        static let typeExecutable: UInt16 = 2
        static let typeSharedObject: UInt16 = 3
        static let typeCore: UInt16 = 4

        static let segmentLoad: UInt32 = 1
        static let segmentDynamic: UInt32 = 2

        static let sectionNull: UInt32 = 0
        static let sectionNoBits: UInt32 = 8
        /// e_shstrndx value meaning the real index is in section 0's sh_link.
        static let sectionIndexEscape: UInt64 = 0xffff

        static let tagNull: Int64 = 0
        static let tagNeeded: Int64 = 1
        static let tagStringTable: Int64 = 5
        static let tagStringTableSize: Int64 = 10

        #if arch(x86_64)
        static let hostMachine: UInt16 = 62
        static let hostMachineName = "x86-64"
        #elseif arch(arm64)
        static let hostMachine: UInt16 = 183
        static let hostMachineName = "AArch64"
        #else
        #error("ELFImage knows the ELF machine number only of x86_64 and arm64 hosts")
        #endif

        /// Names for the machines a plugin is most likely to have been built for by mistake.
        static func machineName(_ machine: UInt16) -> String? {
            switch machine {
            case 3: "i386"
            case 8: "MIPS"
            case 20: "PowerPC"
            case 21: "PowerPC64"
            case 22: "S/390"
            case 40: "ARM"
            case 62: "x86-64"
            case 183: "AArch64"
            case 243: "RISC-V"
            case 258: "LoongArch"
            default: nil
            }
        }
    }

    /// One entry of the program header table, as far as the inspection needs it.
    private struct ProgramHeader {
        let index: Int
        let type: UInt32
        let offset: UInt64
        let virtualAddress: UInt64
        let fileSize: UInt64
        let memorySize: UInt64
    }

    /// The checks of `ELFImage.inspect`, over one file's bytes.
    private struct Inspector {
        let bytes: UnsafeRawBufferPointer
        let file: String

        var size: UInt64 { UInt64(bytes.count) }

        // MARK: Header

        func checkIdentification() throws(PluginError) {
            guard !bytes.isEmpty else {
                throw failure(.notSharedObject, "empty file")
            }
            // A file shorter than the magic that matches as far as it goes is a
            // truncated ELF file rather than some other kind of file.
            let leading = bytes.prefix(ELF.magic.count)
            guard leading.elementsEqual(ELF.magic.prefix(leading.count)) else {
                let shown = leading.map(Self.hexByte).joined(separator: " ")
                throw failure(.notSharedObject, "not an ELF file (starts with \(shown))")
            }
            if bytes.count > ELF.classOffset {
                switch bytes[ELF.classOffset] {
                case ELF.class64: break
                case ELF.class32: throw failure(.incompatibleImage, "32-bit ELF file, this host loads only 64-bit images")
                case let other: throw failure(.incompatibleImage, "unknown ELF class \(other), this host loads only 64-bit images")
                }
            }
            if bytes.count > ELF.dataOffset {
                switch bytes[ELF.dataOffset] {
                case ELF.littleEndian: break
                case ELF.bigEndian: throw failure(.incompatibleImage, "big-endian ELF file, this host is little-endian")
                case let other: throw failure(.incompatibleImage, "unknown ELF byte order \(other), this host is little-endian")
                }
            }
            guard size >= ELF.headerSize else {
                throw failure(.truncated, "truncated: the file has \(size) bytes, fewer than the \(ELF.headerSize)-byte ELF header")
            }
        }

        func checkTypeAndMachine() throws(PluginError) {
            let type = u16(at: 16)
            guard type == ELF.typeSharedObject else {
                let kind = switch type {
                case ELF.typeExecutable: "ELF executable"
                case ELF.typeRelocatable: "ELF relocatable object"
                case ELF.typeCore: "ELF core dump"
                default: "ELF file of type \(type)"
                }
                throw failure(.notSharedObject, "\(kind), not a shared object")
            }
            let machine = u16(at: 18)
            guard machine == ELF.hostMachine else {
                let name = ELF.machineName(machine).map { " (\($0))" } ?? ""
                throw failure(.incompatibleImage, "built for machine \(machine)\(name), this host is \(ELF.hostMachineName)")
            }
        }

        // MARK: Segments

        func programHeaders() throws(PluginError) -> [ProgramHeader] {
            let tableOffset = u64(at: 32)
            let entrySize = u16(at: 54)
            let count = u16(at: 56)
            guard count > 0 else {
                throw failure(.notSharedObject, "ELF shared object without program headers")
            }
            guard UInt64(entrySize) == ELF.programHeaderSize else {
                throw failure(.notSharedObject, "malformed ELF header: program header entries are \(entrySize) bytes, expected \(ELF.programHeaderSize)")
            }
            // At most 65535 × 56 bytes: the product cannot overflow.
            let tableSize = UInt64(count) * ELF.programHeaderSize
            try requireInside("the program header table", offset: tableOffset, length: tableSize)
            return (0..<Int(count)).map { index in
                let entry = tableOffset + UInt64(index) * ELF.programHeaderSize
                return ProgramHeader(
                    index: index,
                    type: u32(at: entry),
                    offset: u64(at: entry + 8),
                    virtualAddress: u64(at: entry + 16),
                    fileSize: u64(at: entry + 32),
                    memorySize: u64(at: entry + 40))
            }
        }

        func checkSegments(_ headers: [ProgramHeader]) throws(PluginError) {
            var loadable = 0
            var dynamic = 0
            for header in headers {
                switch header.type {
                case ELF.segmentLoad:
                    loadable += 1
                    try requireInside("loadable segment \(header.index)", offset: header.offset, length: header.fileSize)
                    guard header.fileSize <= header.memorySize else {
                        throw failure(.notSharedObject, "malformed program header: loadable segment \(header.index) has \(header.fileSize) bytes in the file but only \(header.memorySize) in memory")
                    }
                case ELF.segmentDynamic:
                    dynamic += 1
                    try requireInside("the dynamic segment (program header \(header.index))", offset: header.offset, length: header.fileSize)
                default:
                    break
                }
            }
            guard loadable > 0 else {
                throw failure(.notSharedObject, "ELF shared object without loadable segments")
            }
            guard dynamic > 0 else {
                throw failure(.notSharedObject, "ELF file without a dynamic segment, not a loadable shared object")
            }
        }

        // MARK: Sections

        /// Checks that the section headers and every section with file contents
        /// fit in the file (the section header table is normally the very last
        /// thing in a file, so this is what catches a file cut short after its
        /// segments), and reports whether a section name starts with "swift5_".
        func checkSectionsForSwift() throws(PluginError) -> Bool {
            let tableOffset = u64(at: 40)
            guard tableOffset != 0 else { return false }
            let entrySize = u16(at: 58)
            var count = UInt64(u16(at: 60))
            var namesIndex = UInt64(u16(at: 62))
            guard UInt64(entrySize) == ELF.sectionHeaderSize else {
                throw failure(.notSharedObject, "malformed ELF header: section header entries are \(entrySize) bytes, expected \(ELF.sectionHeaderSize)")
            }
            // Extended numbering: files with very many sections keep the real
            // count and name table index in the otherwise empty section 0.
            if count == 0 || namesIndex == ELF.sectionIndexEscape {
                try requireInside("the section header table", offset: tableOffset, length: ELF.sectionHeaderSize)
                if count == 0 { count = u64(at: tableOffset + 32) }
                if namesIndex == ELF.sectionIndexEscape { namesIndex = UInt64(u32(at: tableOffset + 40)) }
            }
            let (tableSize, overflow) = count.multipliedReportingOverflow(by: ELF.sectionHeaderSize)
            guard !overflow else {
                throw failure(.truncated, "truncated: the section header table (\(count) entries) ends past the end of the file")
            }
            try requireInside("the section header table", offset: tableOffset, length: tableSize)

            func header(_ index: UInt64) -> UInt64 { tableOffset + index * ELF.sectionHeaderSize }
            func hasContents(_ index: UInt64) -> Bool {
                let type = u32(at: header(index) + 4)
                return type != ELF.sectionNull && type != ELF.sectionNoBits
            }

            // Without a usable name table there are no names to look at; dlopen
            // never reads them, so that alone is no reason to refuse the file.
            var names: Range<UInt64>?
            if namesIndex != 0, namesIndex < count, hasContents(namesIndex) {
                let start = u64(at: header(namesIndex) + 24)
                let length = u64(at: header(namesIndex) + 32)
                try requireInside("the section name string table", offset: start, length: length)
                names = start..<(start + length)
            }
            func name(_ index: UInt64) -> Range<UInt64>? {
                guard let names else { return nil }
                let (start, overflow) = names.lowerBound.addingReportingOverflow(UInt64(u32(at: header(index))))
                guard !overflow, start < names.upperBound else { return nil }
                return start..<names.upperBound
            }

            let swiftPrefix = Array("swift5_".utf8)
            var swiftSection = false
            for index in 0..<count {
                if let name = name(index), hasPrefix(swiftPrefix, in: name) { swiftSection = true }
                // Sections the loader never maps still belong to the file: one
                // reaching past the end means the copy is incomplete.
                guard hasContents(index) else { continue }
                try requireInside(
                    name(index).map { "section \(index) (\(string(in: $0)))" } ?? "section \(index)",
                    offset: u64(at: header(index) + 24), length: u64(at: header(index) + 32))
            }
            return swiftSection
        }

        // MARK: Dynamic section

        /// Whether a `DT_NEEDED` entry names libswiftCore.so. Segments have been
        /// checked to lie inside the file, so offsets derived from them are safe.
        func dynamicSectionNeedsSwiftCore(_ headers: [ProgramHeader]) -> Bool {
            let loads = headers.filter { $0.type == ELF.segmentLoad }
            for segment in headers where segment.type == ELF.segmentDynamic {
                var needed: [UInt64] = []
                var stringTableAddress: UInt64?
                var stringTableSize: UInt64?
                scan: for entry in 0..<(segment.fileSize / ELF.dynamicEntrySize) {
                    let at = segment.offset + entry * ELF.dynamicEntrySize
                    let value = u64(at: at + 8)
                    switch Int64(bitPattern: u64(at: at)) {
                    case ELF.tagNull: break scan
                    case ELF.tagNeeded: needed.append(value)
                    case ELF.tagStringTable: stringTableAddress = value
                    case ELF.tagStringTableSize: stringTableSize = value
                    default: break
                    }
                }
                guard !needed.isEmpty, let stringTableAddress,
                      var strings = fileRange(ofAddress: stringTableAddress, in: loads)
                else { continue }
                if let stringTableSize {
                    let (end, overflow) = strings.lowerBound.addingReportingOverflow(stringTableSize)
                    if !overflow, end < strings.upperBound { strings = strings.lowerBound..<end }
                }
                for nameOffset in needed where nameOffset < strings.upperBound - strings.lowerBound {
                    let name = string(in: (strings.lowerBound + nameOffset)..<strings.upperBound)
                    // The entry may be a bare soname or a path; compare its last component.
                    let lastComponent = name.split(separator: "/").last ?? ""
                    if lastComponent.hasPrefix("libswiftCore.so") { return true }
                }
            }
            return false
        }

        /// The file bytes backing the virtual address `address`, up to the end of
        /// the loadable segment holding it.
        private func fileRange(ofAddress address: UInt64, in loads: [ProgramHeader]) -> Range<UInt64>? {
            for segment in loads where address >= segment.virtualAddress {
                let delta = address - segment.virtualAddress
                guard delta < segment.fileSize else { continue }
                return (segment.offset + delta)..<(segment.offset + segment.fileSize)
            }
            return nil
        }

        // MARK: Reading

        private func requireInside(_ what: @autoclosure () -> String, offset: UInt64, length: UInt64) throws(PluginError) {
            let (end, overflow) = offset.addingReportingOverflow(length)
            guard overflow || end > size else { return }
            let reason = overflow
                ? "truncated: \(what()) ends past the end of the file, which has \(size) bytes"
                : "truncated: \(what()) ends at byte \(end) but the file has \(size) bytes"
            throw failure(.truncated, reason)
        }

        // Callers check `offset` against the file size first, so the conversion
        // to Int cannot trap and the load stays inside `bytes`.
        private func u16(at offset: UInt64) -> UInt16 {
            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: Int(offset), as: UInt16.self))
        }

        private func u32(at offset: UInt64) -> UInt32 {
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: Int(offset), as: UInt32.self))
        }

        private func u64(at offset: UInt64) -> UInt64 {
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: Int(offset), as: UInt64.self))
        }

        // `range` lies inside the file in both of these.
        private func hasPrefix(_ prefix: [UInt8], in range: Range<UInt64>) -> Bool {
            guard range.upperBound - range.lowerBound >= UInt64(prefix.count) else { return false }
            let from = Int(range.lowerBound)
            return bytes[from..<(from + prefix.count)].elementsEqual(prefix)
        }

        /// The NUL-terminated string at the start of `range`, cut at its end if it has no terminator.
        private func string(in range: Range<UInt64>) -> String {
            let window = bytes[Int(range.lowerBound)..<Int(range.upperBound)]
            let terminator = window.firstIndex(of: 0) ?? window.endIndex
            return String(decoding: window[..<terminator], as: UTF8.self)
        }

        private func failure(_ code: PluginError.Code, _ reason: String) -> PluginError {
            PluginError(code, file: file, reason: reason)
        }

        private static func hexByte(_ byte: UInt8) -> String {
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }
    }
}

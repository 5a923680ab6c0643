/// The symbol names of a 64-bit little-endian ELF image (`.dynsym` and
/// `.symtab`), read without loading it: what `servicehost check` needs to
/// explain a missing entry point. Every offset is checked against the
/// buffer; a malformed table yields fewer symbols, never a crash.
struct ELFSymbols: Sendable {
    struct Symbol: Sendable, Equatable {
        let name: String
        /// In `.dynsym`, defined, global or weak, default or protected visibility: what `dlsym` finds.
        let exported: Bool
        /// Defined in this image (not an import).
        let defined: Bool
    }

    let symbols: [Symbol]

    init(_ bytes: UnsafeRawBufferPointer) {
        func u16(_ offset: Int) -> Int? {
            offset >= 0 && offset + 2 <= bytes.count ? Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))) : nil
        }
        func u32(_ offset: Int) -> Int? {
            offset >= 0 && offset + 4 <= bytes.count ? Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) : nil
        }
        func u64(_ offset: Int) -> Int? {
            guard offset >= 0 && offset + 8 <= bytes.count else { return nil }
            return Int(exactly: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
        }
        func string(_ offset: Int, limit: Int) -> String? {
            guard offset >= 0, offset < limit, limit <= bytes.count else { return nil }
            var end = offset
            while end < limit, bytes[end] != 0 { end += 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<end]), as: UTF8.self)
        }
        var found: [Symbol] = []
        guard bytes.count >= 64, bytes[4] == 2, bytes[5] == 1,
              let sectionTable = u64(40), let entrySize = u16(58), let count = u16(60), entrySize >= 64 else {
            symbols = []
            return
        }
        for index in 0..<count {
            let header = sectionTable + index * entrySize
            guard let type = u32(header + 4), type == 2 || type == 11,
                  let offset = u64(header + 24), let size = u64(header + 32), let link = u32(header + 40),
                  offset <= bytes.count, size <= bytes.count - offset else { continue }
            let stringsHeader = sectionTable + link * entrySize
            guard let stringsOffset = u64(stringsHeader + 24), let stringsSize = u64(stringsHeader + 32),
                  stringsOffset <= bytes.count, stringsSize <= bytes.count - stringsOffset else { continue }
            var symbol = offset + 24  // entry 0 is the null symbol
            while symbol + 24 <= offset + size {
                defer { symbol += 24 }
                guard let nameOffset = u32(symbol), nameOffset > 0,
                      let name = string(stringsOffset + nameOffset, limit: stringsOffset + stringsSize),
                      let sectionIndex = u16(symbol + 6) else { continue }
                let binding = bytes[symbol + 4] >> 4
                let visibility = bytes[symbol + 5] & 3
                let defined = sectionIndex != 0
                let exported = type == 11 && defined && (binding == 1 || binding == 2) && (visibility == 0 || visibility == 3)
                found.append(Symbol(name: name, exported: exported, defined: defined))
            }
        }
        symbols = found
    }

    /// Why `name` is not exported, when the image shows one of the two common
    /// mistakes: a C++-mangled name, or a definition that is hidden or static.
    func hint(forMissing name: String) -> String? {
        let defined = symbols.filter(\.defined)
        if let mangled = defined.first(where: { $0.name != name && $0.name.hasPrefix("_Z") && $0.name.contains("\(name.utf8.count)\(name)") }) {
            return "found the C++-mangled symbol '\(mangled.name)': declare it extern \"C\" or use SVC_EXPORT"
        }
        if let swift = defined.first(where: { $0.name != name && $0.name.hasPrefix("$s") && $0.name.contains(name) && $0.exported }) {
            return "found the Swift symbol '\(swift.name)': give it a C name with @_cdecl(\"\(name)\")"
        }
        if defined.contains(where: { $0.name == name && !$0.exported }) {
            return "'\(name)' is defined but not exported (hidden or static): make it public / visible"
        }
        return nil
    }
}

// elf_swift.swift -- the smallest Swift shared object with real Swift
// metadata (a class and a String), for the ELF header tests' detection of
// Swift images. It is never loaded.
//
// Build: swiftc -emit-library -parse-as-library -module-name M -o out.so Tests/Fixtures/elf_swift.swift

/// A class, so that the image carries type metadata in its swift5_ sections.
final class ELFProbeGreeting {
    let name: String

    init(name: String) {
        self.name = name
    }

    var text: String { "hello, \(name)" }
}

@_cdecl("elf_probe")
func elfProbe() -> Int32 {
    Int32(ELFProbeGreeting(name: "elf").text.utf8.count)
}

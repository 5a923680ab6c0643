/// A fast digest of a plugin file's bytes, so that the scanner's verdict
/// follows the content: the same bytes under a new modification time (a
/// redeploy, `cp` of a version seen before) are not scanned again.
///
/// Not cryptographic: whoever can write a plugin file can already run code in
/// the host through `svc_create`, so a deliberate collision gains nothing.
/// Two independent 64-bit lanes over 8-byte words keep accidental collisions
/// out of reach and cost a fraction of a millisecond per megabyte.
struct ContentDigest: Hashable, Sendable {
    let size: Int
    let first: UInt64
    let second: UInt64

    init(_ bytes: [UInt8]) {
        var a: UInt64 = 0x9E37_79B9_7F4A_7C15
        var b: UInt64 = 0xC2B2_AE3D_27D4_EB4F
        bytes.withUnsafeBytes { buffer in
            let words = buffer.count / 8
            for index in 0..<words {
                let word = buffer.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)
                a = (a ^ word) &* 0x100_0000_01B3 &+ (a >> 29)
                b = (b &+ word) &* 0xFF51_AFD7_ED55_8CCD ^ (b >> 31)
            }
            var tail: UInt64 = 0
            for index in (words * 8)..<buffer.count { tail = tail << 8 | UInt64(buffer[index]) }
            a = (a ^ tail) &* 0x100_0000_01B3
            b = (b &+ tail) &* 0xFF51_AFD7_ED55_8CCD
        }
        size = bytes.count
        first = a
        second = b
    }
}

import CFFIShims
import CLibFFI

/// A prepared libffi call interface (`ffi_cif`) for one C function signature.
///
/// Preparing a CIF validates and lays out the signature; doing it once and
/// keeping it is what makes an `ffi_call` cheap. The CIF and the argument
/// type array it points into live as long as this object.
final class CallInterface: @unchecked Sendable {
    let cif: UnsafeMutablePointer<ffi_cif>
    private let argumentTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>
    private let argumentCount: Int

    enum CType {
        case void, uint32, sint32, pointer, size

        var ffiType: UnsafeMutablePointer<ffi_type> {
            switch self {
            case .void: cffi_type_void()
            case .uint32: cffi_type_uint32()
            case .sint32: cffi_type_sint32()
            case .pointer: cffi_type_pointer()
            case .size: cffi_type_size()
            }
        }
    }

    init(returning result: CType, arguments: [CType]) {
        argumentCount = arguments.count
        argumentTypes = .allocate(capacity: max(1, arguments.count))
        for (index, argument) in arguments.enumerated() {
            (argumentTypes + index).initialize(to: argument.ffiType)
        }
        cif = .allocate(capacity: 1)
        let status = ffi_prep_cif(cif, cffi_default_abi(), UInt32(arguments.count), result.ffiType, argumentTypes)
        // Only a malformed type description fails here, and these are fixed at compile time.
        precondition(status == FFI_OK, "ffi_prep_cif failed with status \(status)")
    }

    deinit {
        cif.deallocate()
        argumentTypes.deinitialize(count: argumentCount)
        argumentTypes.deallocate()
    }
}

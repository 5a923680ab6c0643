#include "CFFIShims.h"

ffi_type *cffi_type_void(void) { return &ffi_type_void; }
ffi_type *cffi_type_uint32(void) { return &ffi_type_uint32; }
ffi_type *cffi_type_sint32(void) { return &ffi_type_sint32; }
ffi_type *cffi_type_pointer(void) { return &ffi_type_pointer; }
ffi_type *cffi_type_size(void) { return sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32; }

ffi_abi cffi_default_abi(void) { return FFI_DEFAULT_ABI; }

void *cffi_closure_alloc(void **code) { return ffi_closure_alloc(sizeof(ffi_closure), code); }

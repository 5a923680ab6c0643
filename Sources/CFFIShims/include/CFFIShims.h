#ifndef CFFI_SHIMS_H
#define CFFI_SHIMS_H

#include <ffi.h>

/* libffi describes C types with mutable global objects (ffi_type_sint32 and
 * friends). Swift 6's strict concurrency checking rejects any reference to a
 * mutable C global, so these functions hand out their addresses instead. */
ffi_type *cffi_type_void(void);
ffi_type *cffi_type_uint32(void);
ffi_type *cffi_type_sint32(void);
ffi_type *cffi_type_pointer(void);
/* size_t as libffi describes it (uint64 on LP64, uint32 on ILP32). */
ffi_type *cffi_type_size(void);

/* FFI_DEFAULT_ABI is a macro whose value is an enumerator that depends on the
 * platform; Swift cannot import it. */
ffi_abi cffi_default_abi(void);

/* ffi_closure's size depends on the platform's trampoline layout, and Swift
 * imports the struct with an opaque union it cannot size reliably. */
void *cffi_closure_alloc(void **code);

#endif

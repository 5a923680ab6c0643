/*
 * elf_minimal.c -- the smallest C shared object: one exported function and
 * nothing from the host. The ELF header tests build it, truncate it and
 * corrupt copies of it; it is never loaded.
 */

int elf_probe(void);

int elf_probe(void) {
    return 42;
}

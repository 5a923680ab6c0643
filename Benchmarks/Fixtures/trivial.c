/* The trivial executable whose posix_spawn + wait is the process baseline. */
int main(void) { return 0; }

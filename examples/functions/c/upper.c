/* upper: an Orb function in C. Reads all of stdin, writes it upper-cased.
 * Built with clang's wasm32-wasi target against Debian's wasi-libc
 * (scripts/guests); Orb runs it like any other WASI preview-1 command. */
#include <ctype.h>
#include <stdio.h>

int main(void) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        for (size_t i = 0; i < n; i++) {
            buf[i] = (char)toupper((unsigned char)buf[i]);
        }
        if (fwrite(buf, 1, n, stdout) != n) {
            fprintf(stderr, "upper: cannot write output\n");
            return 1;
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "upper: cannot read input\n");
        return 1;
    }
    return 0;
}

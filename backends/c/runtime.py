"""Fixed text of the C backend: the integer helpers every model.c starts with, main.c and the Makefile.

The helpers spell out the emulator's conventions (mpc.fx.arith) in portable C99: shifts of negative
values go through unsigned arithmetic or explicit floor division by powers of two (a right shift of
a negative signed value is implementation-defined in C99, a left shift of one undefined).
"""
from __future__ import annotations

HELPERS = """\
/* floor(v / 2^s) for s >= 1, without shifting a negative value */
static int64_t mpc_asr(int64_t v, int s)
{
    return v >= 0 ? (v >> s) : -(((-(v + 1)) >> s)) - 1;
}

/* v * 2^s for s >= 0, as a shift of the magnitude */
static int64_t mpc_shl(int64_t v, int s)
{
    return v >= 0 ? (int64_t)((uint64_t)v << s) : -(int64_t)((uint64_t)(-v) << s);
}

/* v * 2^-s: exact for s <= 0; for s > 0 floor, or nearest with ties toward +infinity */
static int64_t mpc_round_shift(int64_t v, int s, int nearest)
{
    if (s <= 0)
        return mpc_shl(v, -s);
    if (nearest)
        v += (int64_t)1 << (s - 1);
    return mpc_asr(v, s);
}

/* v brought into a signed `bits`-bit range: clamped (saturate) or its low bits (wrap) */
static int64_t mpc_overflow(int64_t v, int bits, int saturate)
{
    int64_t hi = (int64_t)(((uint64_t)1 << (bits - 1)) - 1), lo = -hi - 1;
    uint64_t mask = ((uint64_t)1 << bits) - 1, u;
    if (saturate)
        return v > hi ? hi : (v < lo ? lo : v);
    u = (uint64_t)v & mask;
    return u > (uint64_t)hi ? -(int64_t)(mask - u) - 1 : (int64_t)u;
}
"""

DIV_HELPER = """\
/* floor(n / d) for d > 0, or floor((2n + d) / 2d) (nearest, ties toward +infinity): C99 division
   truncates toward zero, so a negative quotient with a remainder is one lower */
static int64_t mpc_div_round(int64_t n, int64_t d, int nearest)
{
    int64_t q;
    if (nearest) {
        n = 2 * n + d;
        d = 2 * d;
    }
    q = n / d;
    if (n % d != 0 && n < 0)
        q--;
    return q;
}
"""

MP_HELPER = """\
/* Integer MP threshold: the largest alpha with sum_j [a_j - alpha]_+ + [-a_j - alpha]_+ >= gamma,
   by `halvings` bisection steps over [max a - gamma, max a]: adds, compares and shifts only. */
static int64_t mpc_mp_alpha(const int64_t a[], int n, int64_t gamma, int halvings)
{
    int64_t top = a[0], lo, hi, mid, f, t;
    int i, k;
    for (i = 1; i < n; i++)
        if (a[i] > top)
            top = a[i];
    lo = top - gamma;
    hi = top;
    for (k = 0; k < halvings; k++) {
        mid = lo + ((hi - lo) >> 1);
        f = 0;
        for (i = 0; i < n && f < gamma; i++) {   /* f only grows: stop once the answer is known */
            t = a[i] - mid;
            if (t > 0)
                f += t;
            t = -a[i] - mid;
            if (t > 0)
                f += t;
        }
        if (f >= gamma)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}
"""

MAIN_C = """\
/* Driver: reads raw samples of MPC_IN_SIZE {in_t} (native byte order) from stdin until it ends and
   writes MPC_OUT_SIZE {out_t} per sample to stdout. Usage: ./model < in.raw > out.raw */
#include <stdio.h>
#include "model.h"

int main(void)
{{
    static {in_t} in[MPC_IN_SIZE];
    static {out_t} out[MPC_OUT_SIZE];
    while (fread(in, sizeof in[0], MPC_IN_SIZE, stdin) == MPC_IN_SIZE) {{
        if (mpc_run(in, out) != 0)
            return 1;
        if (fwrite(out, sizeof out[0], MPC_OUT_SIZE, stdout) != MPC_OUT_SIZE)
            return 1;
    }}
    return 0;
}}
"""

MAKEFILE = """\
# Build the host driver: make (CC, CFLAGS may be overridden: make CC=clang)
CC ?= cc
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror

model: main.c model.c model.h
\t$(CC) $(CFLAGS) -o model main.c model.c

clean:
\trm -f model

.PHONY: clean
"""

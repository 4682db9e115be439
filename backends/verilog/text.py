"""Small Verilog-2005 spelling helpers shared by the per-op renderers: literals, sign extension, ROMs.

Every vector is a packed bus with element i in bits [i*W +: W] (element 0 in the least significant
bits); signed values are two's complement.
"""
from __future__ import annotations


def lit(value: int, width: int) -> str:
    """A sized literal of `width` bits holding `value` (negative values as two's complement)."""
    return f"{width}'h{value & ((1 << width) - 1):x}"


def slit(value: int, width: int) -> str:
    """A signed sized literal (`-8'sd5`, `8'sd5`)."""
    return f"-{width}'sd{-value}" if value < 0 else f"{width}'sd{value}"


def pack(values, width: int) -> int:
    """The integer whose bits [i*width +: width] hold values[i] (two's complement)."""
    out, mask = 0, (1 << width) - 1
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def sext(vec: str, base: str, w: int, to: int) -> str:
    """Element [base +: w] of bus `vec`, sign-extended to `to` bits (an unsigned concatenation)."""
    if to == w:
        return f"{vec}[{base} +: {w}]"
    return f"{{{{{to - w}{{{vec}[{base} + {w - 1}]}}}}, {vec}[{base} +: {w}]}}"


def rom(name: str, index_bits: int, word_bits: int, words: list[int]) -> list[str]:
    """A constant ROM as a function of its index (a case table; synthesis makes it LUTs or block ROM)."""
    lines = [f"    function [{word_bits - 1}:0] {name};", f"        input [{index_bits - 1}:0] idx;",
             "        begin", "            case (idx)"]
    lines += [f"                {index_bits}'d{i}: {name} = {lit(w, word_bits)};" for i, w in enumerate(words)]
    lines += [f"                default: {name} = {word_bits}'d0;", "            endcase", "        end",
              "    endfunction"]
    return lines


def bits_for(n: int) -> int:
    """Bits of a counter that holds 0 .. n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


def saturate(dst: str, src: str, src_bits: int, width: int, wrap: bool) -> list[str]:
    """Statements of an always block: `dst` (width bits) = `src` (signed, src_bits) saturated or wrapped."""
    if src_bits < width:
        return [f"{dst} = {{{{{width - src_bits}{{{src}[{src_bits - 1}]}}}}, {src}}};"]
    if wrap or src_bits == width:
        return [f"{dst} = {src}[{width - 1}:0];"]
    hi, lo = (1 << (width - 1)) - 1, -(1 << (width - 1))
    return [f"if ({src} > {slit(hi, src_bits)}) {dst} = {lit(hi, width)};",
            f"else if ({src} < {slit(lo, src_bits)}) {dst} = {lit(lo, width)};",
            f"else {dst} = {src}[{width - 1}:0];"]

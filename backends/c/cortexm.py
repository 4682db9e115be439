"""Cortex-M: cross-compile the emitted model.c for an Arm MPS2 board (AN386, Cortex-M4) and run it
under qemu-system-arm with semihosting, so its outputs can be compared with the emulator's.

The firmware is model.c plus a generated driver holding the test inputs as a `static const` array;
it prints every output integer on the semihosting console and exits through semihosting. A
minimal startup (vector table, .data copy, .bss clear) and linker script are generated here: flash
at 0x00000000, RAM at 0x20000000, as on the MPS2 FPGA images qemu emulates.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from mpc.backends.c.build import ARM_FLAGS, BuildError, run_tool, section_sizes, tool

MACHINE = "mps2-an386"

LINKER = """\
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M }
ENTRY(Reset_Handler)
SECTIONS {
  .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
  .text : { *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  _sidata = LOADADDR(.data);
  .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
  .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
  end = .;
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"""

STARTUP = """\
/* Minimal Cortex-M startup: copy .data, clear .bss, run main, leave through semihosting. */
#include <stdint.h>
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);
void Reset_Handler(void);

static void semihost_exit(int code)
{
    /* SYS_EXIT_EXTENDED: ADP_Stopped_ApplicationExit with the exit code */
    static uint32_t block[2];
    block[0] = 0x20026u;
    block[1] = (uint32_t)code;
    __asm__ volatile("mov r0, #0x20\\n mov r1, %0\\n bkpt 0xAB" : : "r"(block) : "r0", "r1", "memory");
}

void Reset_Handler(void)
{
    uint32_t *s = &_sidata, *d = &_sdata;
    while (d < &_edata)
        *d++ = *s++;
    for (d = &_sbss; d < &_ebss;)
        *d++ = 0;
    initialise_monitor_handles();
    semihost_exit(main());
    for (;;)
        ;
}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[2])(void) = {
    (void (*)(void))(&_estack), Reset_Handler};
"""


def _literal(v, c_type: str) -> str:
    # float inputs as C99 hexadecimal literals: the exact f32 value, no decimal rounding
    return f"{float(v).hex()}f" if c_type == "float" else str(int(v))


# a float output printed as the integer of its IEEE-754 bits, so the host can compare bit for bit
FLOAT_PRINT = """            {{ uint32_t bits; memcpy(&bits, &out[i], sizeof bits); printf("%lu\\n", (unsigned long)bits); }}"""


def driver(inputs: np.ndarray, in_t: str, out_t: str) -> str:
    """A main() that runs every sample of `inputs` (stored integers or f32, [S, IN]) and prints the
    outputs (integers; for float outputs the integers of their bits)."""
    rows = ["{" + ", ".join(_literal(v, in_t) for v in row) + "}" for row in inputs.reshape(inputs.shape[0], -1)]
    data = ",\n    ".join(rows)
    show = FLOAT_PRINT.format() if out_t == "float" else '            printf("%ld\\n", (long)out[i]);'
    return f"""\
#include <stdio.h>
#include <string.h>
#include "model.h"

static const {in_t} samples[{inputs.shape[0]}][MPC_IN_SIZE] = {{
    {data}
}};

int main(void)
{{
    static {out_t} out[MPC_OUT_SIZE];
    int s, i;
    for (s = 0; s < {inputs.shape[0]}; s++) {{
        if (mpc_run(samples[s], out) != 0)
            return 1;
        for (i = 0; i < MPC_OUT_SIZE; i++)
{show}
    }}
    return 0;
}}
"""


def build(cdir: Path, work: Path, inputs: np.ndarray, in_t: str, out_t: str) -> Path:
    """The firmware ELF for model.c in `cdir` with `inputs` built in (arm-none-eabi-gcc -Os)."""
    (work / "linker.ld").write_text(LINKER)
    (work / "startup.c").write_text(STARTUP)
    (work / "main_arm.c").write_text(driver(inputs, in_t, out_t))
    elf = work / "firmware.elf"
    run_tool([tool("arm-none-eabi-gcc"), *ARM_FLAGS, "-I", str(cdir), "-nostartfiles", "--specs=nano.specs",
          "--specs=rdimon.specs", "-T", str(work / "linker.ld"), "-o", str(elf), str(work / "startup.c"),
          str(work / "main_arm.c"), str(cdir / "model.c")], "arm-none-eabi-gcc")
    return elf


def run_qemu(elf: Path, timeout: float = 300) -> list[int]:
    """Run firmware under qemu-system-arm (MPS2-AN386, semihosting); the integers it printed."""
    cmd = [tool("qemu-system-arm"), "-M", MACHINE, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"qemu-system-arm timed out after {timeout:.0f} s") from None
    if p.returncode != 0:
        raise BuildError(f"firmware exited {p.returncode}: {p.stderr.decode(errors='replace')[:300]}")
    return [int(t) for t in p.stdout.decode().split()]


def firmware_sizes(elf: Path) -> dict[str, int]:
    """Flash (text + data) and static RAM (data + bss) of the whole firmware, from arm-none-eabi-size."""
    s = section_sizes(elf, "arm-none-eabi-size")
    return {"flash_bytes": s["text"] + s["data"], "ram_bytes": s["data"] + s["bss"], **s}

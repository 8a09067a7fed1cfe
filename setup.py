"""Build of the compiled modules (everything else is in pyproject.toml):
``syncflow_core._hashloops`` (the hash loop), ``syncflow_core._numscan`` (text numbers) and
``syncflow_core._keyjoin`` (the delta's join).

BLAKE3's SIMD code is picked at run time by its own dispatcher (CPUID): on x86-64 Unix the
upstream assembly files are handed to the compiler driver, which assembles them; on AArch64 the
NEON intrinsics need no flags; anything else builds the portable code only.
"""

from __future__ import annotations

import platform
import sys

from setuptools import Extension, setup

NATIVE = "syncflow_core/native"
machine = platform.machine().lower()
x86_64 = machine in ("x86_64", "amd64") and sys.maxsize > 2**32
unix = not sys.platform.startswith("win")

sources = [f"{NATIVE}/hashloops.c", f"{NATIVE}/blake3/blake3.c",
           f"{NATIVE}/blake3/blake3_dispatch.c", f"{NATIVE}/blake3/blake3_portable.c"]
extra_objects: list[str] = []
macros: list[tuple[str, str | None]] = []
if x86_64 and unix:
    extra_objects = [f"{NATIVE}/blake3/blake3_{isa}_x86-64_unix.S"
                     for isa in ("sse2", "sse41", "avx2", "avx512")]
elif machine in ("aarch64", "arm64"):
    sources.append(f"{NATIVE}/blake3/blake3_neon.c")
    macros.append(("BLAKE3_USE_NEON", "1"))
else:
    macros += [(f"BLAKE3_NO_{isa}", None) for isa in ("SSE2", "SSE41", "AVX2", "AVX512")]

setup(
    ext_modules=[
        Extension(
            "syncflow_core._hashloops",
            sources=sources,
            include_dirs=[NATIVE],
            extra_objects=extra_objects,
            define_macros=macros,
            extra_compile_args=["-O3"] if unix else [],
        ),
        Extension(
            "syncflow_core._numscan",
            sources=[f"{NATIVE}/numscan.c"],
            extra_compile_args=["-O3"] if unix else [],
        ),
        Extension(
            "syncflow_core._keyjoin",
            sources=[f"{NATIVE}/keyjoin.c"],
            extra_compile_args=["-O3"] if unix else [],
        ),
    ]
)

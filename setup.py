"""Build of the optional C extension ``swarm_sona.kernels._native``.

Project metadata lives in pyproject.toml; this file only declares the extension. The build
never fails because of it: flags are tried from the fastest set down to none, and if no
compiler works the package installs without the extension and runs on the numpy reference
(``swarm_sona.kernels.info()`` then says why). ``SWARM_SONA_BUILD_NATIVE=0`` skips it.

No ``-march=native``: per-CPU code comes from function multi-versioning inside the sources
(x86-64-v3 and baseline clones on x86_64 glibc with GCC >= 12), so a wheel runs on any CPU
of its platform.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_SOURCES = ["_native.c", "nk_linalg.c", "nk_search.c", "nk_hash.c", "nk_quant.c"]
_DIR = "swarm_sona/kernels"


def _flag_sets(compiler_type: str) -> list[list[str]]:
    if compiler_type == "msvc":
        return [["/O2", "/fp:precise"], []]
    return [
        ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fvisibility=hidden", "-Wall", "-Wno-unknown-pragmas"],
        ["-O2", "-DNK_NO_CLONES", "-Wno-unknown-pragmas"],
        ["-DNK_NO_CLONES"],
    ]


class OptionalBuildExt(build_ext):
    """build_ext that tries several flag sets and, failing all, skips the extension."""

    def run(self) -> None:
        if os.environ.get("SWARM_SONA_BUILD_NATIVE", "1") == "0":
            self._skip("SWARM_SONA_BUILD_NATIVE=0")
            return
        try:
            super().run()
        except Exception as exc:  # no compiler at all, broken toolchain: fall back to numpy
            self._skip(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext: Extension) -> None:
        base = list(ext.extra_compile_args or [])
        last: Exception | None = None
        for flags in _flag_sets(self.compiler.compiler_type):
            ext.extra_compile_args = base + flags
            try:
                super().build_extension(ext)
                return
            except Exception as exc:
                last = exc
                print(f"swarm-sona: building {ext.name} with {flags} failed: {exc}", file=sys.stderr)
        self._skip(f"every flag set failed; last error: {last}")

    @staticmethod
    def _skip(reason: str) -> None:
        print(f"swarm-sona: native kernels not built ({reason}); the numpy reference will be used",
              file=sys.stderr)


setup(
    ext_modules=[
        Extension(
            "swarm_sona.kernels._native",
            sources=[f"{_DIR}/{s}" for s in _SOURCES],
            depends=[f"{_DIR}/nk_kernels.h"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)

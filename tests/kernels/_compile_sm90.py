"""Compile recorded Triton kernel specializations for an H100 (sm_90) on a CPU-only machine.

Reads a JSON list of [module, function name, signature, [[index, constexpr value], ...]]
on stdin; prints the JSON list of failure messages as the last line of stdout. Run by
``test_kernels_compile_for_h100.py`` in a process without ``TRITON_INTERPRET``.
"""
import importlib
import json
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TARGET = GPUTarget("cuda", 90, 32)


def main() -> None:
    failures = []
    for module, name, signature, constexprs in json.load(sys.stdin):
        kernel = getattr(importlib.import_module(module), name)
        source = ASTSource(fn=kernel, signature=signature,
                           constexprs={(index,): value for index, value in constexprs})
        try:
            triton.compile(source, target=TARGET)
        except Exception as error:  # noqa: BLE001 - report every failing kernel, not just the first
            failures.append(f"{name} {signature}: {type(error).__name__}: {error}"[:2000])
    print(json.dumps(failures))


if __name__ == "__main__":
    main()

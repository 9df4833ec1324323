"""GPU kernels (Triton), one folder per op: naive.py (torch reference and CPU path),
triton.py (fast path), __init__.py (dispatch; see kernels/dispatch.py).

Imports nothing of ours and has no side effects at import.
"""

"""Brain-side models of neurobridge: spiking reservoirs, HMM-GLMs, tensor-factorized connectomes.

Pure torch/numpy/scipy (brian2 only as an optional backend, imported lazily).
"""

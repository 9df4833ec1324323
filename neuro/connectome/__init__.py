"""Dynamic functional connectomes as tensors (Dyballa et al., arXiv 2402.14102).

Affinity tensors from calcium traces, non-negative CP decomposition (HALS / MU, masked),
rank selection, weighted stochastic-block-model and Louvain community detection, a
synthetic dynamic-connectome generator and the real C. elegans connectomes.
"""

"""Dynamic functional connectomes as tensors (Dyballa et al., arXiv 2402.14102).

Affinity tensors from calcium traces (`affinity`), non-negative CP decomposition by HALS or
multiplicative updates with masks (`ntf`, building blocks in `cp_ops`), rank selection and the
factor-match score (`rank`), a weighted stochastic block model fitted by variational EM
(`sbm`), Louvain and the adjusted Rand index (`community`), synthetic generators
(`synthetic`) and the real C. elegans connectomes shipped with the package (`celegans`).
"""
from neuro.connectome.affinity import AffinityTensor, affinity_tensor
from neuro.connectome.celegans import load_celegans_connectomes, neuron_class
from neuro.connectome.community import adjusted_rand_index, louvain_partition, pair_graph
from neuro.connectome.ntf import NTFResult, ntf
from neuro.connectome.rank import RankSelection, factor_match_score, select_rank
from neuro.connectome.sbm import SBMFit, fit_sbm
from neuro.connectome.synthetic import (
    make_dynamic_connectome,
    make_planted_cp,
    make_weighted_planted_partition,
)

__all__ = [
    "AffinityTensor",
    "NTFResult",
    "RankSelection",
    "SBMFit",
    "adjusted_rand_index",
    "affinity_tensor",
    "factor_match_score",
    "fit_sbm",
    "load_celegans_connectomes",
    "louvain_partition",
    "make_dynamic_connectome",
    "make_planted_cp",
    "make_weighted_planted_partition",
    "neuron_class",
    "ntf",
    "pair_graph",
    "select_rank",
]

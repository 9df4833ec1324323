"""HMM-GLM switching-state models with GLM emissions, coupling filters and weight priors.

Li, Kim, Rodgers, Choi, Wu, "One-hot Generalized Linear Model for Switching Brain State
Discovery" (ICLR 2024, arXiv 2310.15263). Import is light: torch and numpy only.
"""

from neuro.hmmglm.basis import (
    default_basis,
    design_matrix,
    exponential_basis,
    filters_from_weights,
    history_features,
    lag_basis,
    raised_cosine_basis,
)
from neuro.hmmglm.inference import Posterior, forward_backward, viterbi
from neuro.hmmglm.model import HMMGLM
from neuro.hmmglm.params import HMMGLMParams, make_params
from neuro.hmmglm.simulate import SimulatedProblem, paper_problem, reference_problem

__all__ = [
    "HMMGLM", "HMMGLMParams", "Posterior", "SimulatedProblem", "default_basis", "design_matrix",
    "exponential_basis", "filters_from_weights", "forward_backward", "history_features",
    "lag_basis", "make_params", "paper_problem", "raised_cosine_basis", "reference_problem",
    "viterbi",
]

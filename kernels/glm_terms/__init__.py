"""GLM emission terms reduced for EM (see ``naive.py`` for the equations and contract).

``glm_terms`` dispatches (``kernels/dispatch.py``): the one-pass Triton kernel of
``triton.py`` when the tensors are on CUDA and triton imports, the torch reference of
``naive.py`` otherwise; ``NEUROBRIDGE_KERNELS=naive|triton`` forces either.
"""
from __future__ import annotations

from torch import Tensor

from kernels.dispatch import use_triton
from kernels.glm_terms.naive import LINKS, GLMTerms, elementwise
from kernels.glm_terms.naive import glm_terms as naive_glm_terms

__all__ = ["LINKS", "GLMTerms", "elementwise", "glm_terms", "naive_glm_terms"]


def glm_terms(eta: Tensor, counts: Tensor, resp: Tensor | None, link: str, delta: Tensor | None = None,
              step: float = 0.0, per_bin: bool = False, derivatives: bool = False,
              curvature_dtype=None) -> GLMTerms:
    """EM reductions of the GLM terms at eta + step * delta; contract in ``naive.py``."""
    if use_triton(eta, counts, resp, delta):
        from kernels.glm_terms.triton import triton_glm_terms
        return triton_glm_terms(eta, counts, resp, link, delta, step, per_bin, derivatives,
                                curvature_dtype)
    return naive_glm_terms(eta, counts, resp, link, delta, step, per_bin, derivatives,
                           curvature_dtype)

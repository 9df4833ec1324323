"""Parameters of an HMM-GLM and their packing into per-(state, neuron) vectors.

``HMMGLMParams`` holds, for K states, N neurons and an L-function history basis:
log_initial (K,), log_transition (K, K) (rows: from-state), bias (K, N) and
weights (K, N, N, L), ``weights[k, n, m, j]`` being the coefficient of basis function j
on the history of presynaptic neuron m in the drive of neuron n in state k.
``theta`` packs them as (K, N, 1 + N*L) = [bias, weights[k, n].flatten()].
Any leading batch axes (restarts) are allowed in front of every field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class HMMGLMParams:
    """HMM-GLM parameters (module docstring): log_initial (K,), log_transition (K, K) (rows:
    from-state), bias (K, N), weights (K, N, N, L); leading restart axes allowed."""

    log_initial: torch.Tensor
    log_transition: torch.Tensor
    bias: torch.Tensor
    weights: torch.Tensor

    @property
    def num_states(self) -> int:
        return self.bias.shape[-2]

    @property
    def num_neurons(self) -> int:
        return self.bias.shape[-1]

    def theta(self) -> torch.Tensor:
        flat = self.weights.reshape(*self.weights.shape[:-2], -1)
        return torch.cat([self.bias.unsqueeze(-1), flat], dim=-1)

    def with_theta(self, theta: torch.Tensor) -> HMMGLMParams:
        shape = self.weights.shape
        return HMMGLMParams(
            self.log_initial, self.log_transition, theta[..., 0], theta[..., 1:].reshape(shape)
        )

    def select(self, index) -> HMMGLMParams:
        """Pick one element (or a slice) along the leading restart axis."""
        return HMMGLMParams(
            self.log_initial[index], self.log_transition[index], self.bias[index], self.weights[index]
        )

    def to(self, device=None, dtype=None) -> HMMGLMParams:
        return HMMGLMParams(
            *(t.to(device=device, dtype=dtype) for t in
              (self.log_initial, self.log_transition, self.bias, self.weights))
        )

    def permute(self, perm) -> HMMGLMParams:
        """Relabel states: new state i is old state perm[i]."""
        k = self.num_states
        array = np.asarray(perm)
        if array.dtype.kind not in "iu" or array.ndim != 1 or sorted(array.tolist()) != list(range(k)):
            raise ValueError(f"perm must be a permutation of range({k}), got {perm!r}")
        perm = torch.as_tensor(array, device=self.bias.device, dtype=torch.long)
        return HMMGLMParams(
            self.log_initial[..., perm],
            self.log_transition[..., perm, :][..., :, perm],
            self.bias[..., perm, :],
            self.weights[..., perm, :, :, :],
        )

    def numpy(self) -> dict[str, np.ndarray]:
        return {
            "initial": np.exp(self.log_initial.detach().cpu().numpy()),
            "transition": np.exp(self.log_transition.detach().cpu().numpy()),
            "bias": self.bias.detach().cpu().numpy(),
            "weights": self.weights.detach().cpu().numpy(),
        }


def make_params(initial, transition, bias, weights, dtype=torch.float64, device="cpu") -> HMMGLMParams:
    """Build (and check) parameters from probabilities and arrays."""
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float64), got {dtype!r}")

    def as_t(name, x):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
        try:
            array = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as error:  # not numbers (TypeError) or ragged (ValueError)
            kind = ValueError if isinstance(error, ValueError) else TypeError
            raise kind(f"{name} must be an array of real numbers, got {x!r}") from error
        return torch.as_tensor(array).to(device=device, dtype=dtype)

    initial, transition, bias, weights = (as_t(name, x) for name, x in (
        ("initial", initial), ("transition", transition), ("bias", bias), ("weights", weights)))
    if bias.dim() < 2:
        raise ValueError(f"bias must be (K, N) (num_states, num_neurons), got shape {tuple(bias.shape)}")
    k = bias.shape[-2]
    if initial.dim() < 1 or initial.shape[-1] != k or transition.shape[-2:] != (k, k):
        raise ValueError(
            f"initial {tuple(initial.shape)} / transition {tuple(transition.shape)} must match "
            f"num_states={k} of bias {tuple(bias.shape)}"
        )
    for name, probs in (("initial", initial), ("transition", transition)):
        if bool((probs < 0).any()) or not torch.allclose(
            probs.sum(-1), torch.ones((), dtype=dtype, device=device), atol=1e-6
        ):
            raise ValueError(f"{name} must be non-negative with rows summing to 1, got row sums "
                             f"{probs.sum(-1).tolist()}")
    if weights.dim() < 4 or weights.shape[-4:-1] != (k, bias.shape[-1], bias.shape[-1]):
        raise ValueError(f"weights must be (K, N, N, L) = ({k}, {bias.shape[-1]}, "
                         f"{bias.shape[-1]}, L), got {tuple(weights.shape)}")
    for name, values in (("bias", bias), ("weights", weights)):
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name} must be finite (it has NaN or inf)")
    return HMMGLMParams(torch.log(initial), torch.log(transition), bias, weights)


def check_params(params, num_states: int, num_neurons: int, num_bases: int, *, name: str = "params",
                 restart_axis: bool = False) -> HMMGLMParams:
    """``params`` as a model of K states, N neurons and L basis functions takes them: an
    ``HMMGLMParams`` with log_initial (K,), log_transition (K, K), bias (K, N), weights
    (K, N, N, L) (each with one leading restart axis R when ``restart_axis``; then all the
    same R), floating, bias and weights finite, initial and transition rows probabilities
    summing to 1 (to 1e-6, or 50 eps of a coarser dtype). A ``TypeError``/``ValueError``
    naming ``name`` otherwise."""
    if not isinstance(params, HMMGLMParams):
        raise TypeError(f"{name} must be an HMMGLMParams (see neuro.hmmglm.make_params), "
                        f"got {type(params).__name__}")
    k, n, lags = num_states, num_neurons, num_bases
    shapes = {"log_initial": (k,), "log_transition": (k, k), "bias": (k, n), "weights": (k, n, n, lags)}
    fields = {field: getattr(params, field) for field in shapes}
    leading = set()
    for field, tensor in fields.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError(f"{name}.{field} must be a floating torch.Tensor, got "
                            f"{getattr(tensor, 'dtype', type(tensor).__name__)}")
        shape, expected = tuple(tensor.shape), shapes[field]
        extra = len(shape) - len(expected)
        if shape[extra:] != expected or extra not in ((0, 1) if restart_axis else (0,)):
            allowed = f"{expected} or (R, *{expected})" if restart_axis else f"{expected}"
            raise ValueError(f"{name}.{field} must have shape {allowed} for K={k}, N={n}, "
                             f"L={lags}, got {shape}")
        leading.add(shape[:extra])
    if len(leading) > 1:
        raise ValueError(f"{name}: every field needs the same restart axis, got leading shapes "
                         f"{sorted(leading)}")
    for field in ("bias", "weights"):
        if not bool(torch.isfinite(fields[field]).all()):
            raise ValueError(f"{name}.{field} must be finite (it has NaN or inf)")
    for field in ("log_initial", "log_transition"):
        log_probs = fields[field]
        sums = torch.logsumexp(log_probs, -1).exp()
        tolerance = max(1e-6, 50 * torch.finfo(log_probs.dtype).eps)
        if bool(torch.isnan(log_probs).any() or (log_probs == torch.inf).any()) or not bool(
                ((sums - 1).abs() <= tolerance).all()):
            raise ValueError(f"{name}.{field} must be log-probabilities with rows summing to 1 "
                             f"after exp, got row sums {sums.tolist()}")
    return params

"""Bridge: the reservoir's three-factor readout update is a gated delta-rule write.

Runs both sides: ``neuro.reservoir.three_factor.ThreeFactorReadout`` (which dispatches to
``kernels/three_factor``) and the ``bridges`` memories. M readouts with their own gates map to
M heads with one value unit each; keys are the eligibility traces E_t, values the targets
y_t, write strength beta = eta * g_t. The error of a readout is computed from its present
input x_t (z = W x_t), so the exact map is the error-driven Hebbian write with prediction
probe x_t and cue E_t; with no eligibility memory (tau_e = 0, E = x) it is the gated delta
rule of ``bridges.delta_rule`` itself.
"""
from __future__ import annotations

import pytest
import torch

from bridges.delta_rule import delta_rule
from bridges.hebbian import hebbian_step, recall
from neuro.reservoir.three_factor import ThreeFactorReadout

B, T, M, D = 2, 40, 3, 6


def _drive(seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(B, T, D, generator=generator, dtype=torch.float64)
    targets = torch.randn(B, T, M, generator=generator, dtype=torch.float64)
    gates = (torch.rand(B, T, M, generator=generator, dtype=torch.float64) > 0.3).double()
    return features, targets, gates


def _run_readout(readout, features, targets, gates):
    state = readout.initial_state(B, dtype=torch.float64)
    weights, outputs, eligibilities = [], [], []
    for t in range(T):
        state, output = readout.step(state, features[:, t], targets[:, t], gates[:, t])
        weights.append(state.weights)
        outputs.append(output)
        eligibilities.append(state.eligibility)
    return torch.stack(weights, 1), torch.stack(outputs, 1), torch.stack(eligibilities, 1)


@pytest.mark.parametrize("tau_ms", [5.0, 50.0])
def test_three_factor_update_equals_error_driven_write_along_eligibility(tau_ms):
    features, targets, gates = _drive()
    rates = (0.3, 0.05, 0.8)
    readout = ThreeFactorReadout(num_readouts=M, num_features=D, learning_rate=rates,
                                 eligibility_tau_ms=tau_ms, dt_ms=1.0, online=True)
    weights_3f, outputs_3f, eligibility = _run_readout(readout, features, targets, gates)
    beta = gates * torch.tensor(rates, dtype=torch.float64)               # eta * g, [B, T, M]
    memory = torch.zeros(B, M, 1, D, dtype=torch.float64)                 # M heads, V = 1
    for t in range(T):
        x = features[:, t, None, :].expand(B, M, D)
        cue = eligibility[:, t, None, :].expand(B, M, D)
        # The readout's output uses the weights before the write.
        assert (recall(memory, x)[..., 0] - outputs_3f[:, t]).abs().max() <= 1e-12
        memory, _ = hebbian_step(memory, cue, targets[:, t, :, None], write_strength=beta[:, t],
                                 error_driven=True, prediction_probe=x)
        # float64, identical arithmetic up to association order: 1e-12.
        assert (memory[:, :, 0] - weights_3f[:, t]).abs().max() <= 1e-12


def test_without_eligibility_memory_it_is_the_gated_delta_rule():
    features, targets, gates = _drive(seed=1)
    rates = (0.3, 0.05, 0.8)
    readout = ThreeFactorReadout(num_readouts=M, num_features=D, learning_rate=rates,
                                 eligibility_tau_ms=0.0, dt_ms=1.0, online=True)
    weights_3f, _, _ = _run_readout(readout, features, targets, gates)
    beta = gates * torch.tensor(rates, dtype=torch.float64)
    keys = features[:, :, None, :].expand(B, T, M, D).contiguous()         # k = q = x
    for form in ("recurrent", "chunked"):
        _, state = delta_rule(keys, keys, targets[..., None], beta, 1.0, output_final_state=True,
                              form=form, chunk_size=16)
        assert (state[..., 0] - weights_3f[:, -1]).abs().max() <= 1e-10, form


def test_key_predicting_delta_rule_differs_when_eligibility_lags():
    # The honest limit of the map: with tau_e > 0 the attention-form delta rule (error from
    # the key) is a different learning rule from the readout's (error from the input).
    features, targets, gates = _drive(seed=2)
    readout = ThreeFactorReadout(num_readouts=M, num_features=D, learning_rate=0.3,
                                 eligibility_tau_ms=50.0, dt_ms=1.0, online=True)
    weights_3f, _, eligibility = _run_readout(readout, features, targets, gates)
    keys = eligibility[:, :, None, :].expand(B, T, M, D).contiguous()
    _, state = delta_rule(keys, keys, targets[..., None], 0.3 * gates, 1.0,
                          output_final_state=True)
    assert (state[..., 0] - weights_3f[:, -1]).abs().max() > 1e-3

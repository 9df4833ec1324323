"""Bad input to the public kernel entry points: a TypeError/ValueError naming the argument
(checked before dispatch, so the Triton path never reads out of bounds)."""
import math

import numpy as np
import pytest
import torch

from kernels.gla import chunk_gla, fused_recurrent_gla
from kernels.glm_terms import glm_terms
from kernels.hmm_scan import scaled_vecmat_scan
from kernels.izhikevich import izhikevich_network_step_
from kernels.three_factor import three_factor_step


def _three_factor(**change):
    b, m, d = 2, 3, 4
    args = {"weights": torch.zeros(b, m, d), "pending": torch.zeros(b, m, d), "eligibility": torch.zeros(b, d),
                "features": torch.zeros(b, d), "target": torch.zeros(b, m), "gate": torch.ones(b, m),
                "learning_rate": 0.1, "eligibility_decay": 0.5, "online": True}
    args.update(change)
    return three_factor_step(**args)


@pytest.mark.parametrize("change, error, match", [
    ({"eligibility": torch.zeros(4)}, ValueError, "eligibility"),
    ({"pending": torch.zeros(1, 3, 4)}, ValueError, "pending"),
    ({"features": torch.zeros(2, 5)}, ValueError, "features"),
    ({"features": torch.zeros(2, 4, dtype=torch.float64)}, TypeError, "features"),
    ({"target": torch.zeros(3)}, ValueError, "target"),
    ({"gate": np.ones((2, 3))}, TypeError, "gate"),
    ({"weights": torch.zeros(2, 3, 4, dtype=torch.long)}, ValueError, "weights"),
    ({"learning_rate": math.nan}, TypeError, "learning_rate"),
    ({"learning_rate": torch.ones(5)}, ValueError, "learning_rate"),
    ({"eligibility_decay": math.nan}, ValueError, "eligibility_decay"),
    ({"eligibility_decay": 1.5}, ValueError, "eligibility_decay"),
    ({"online": torch.ones(3)}, ValueError, "online"),
    ({"online": 1}, TypeError, "online"),
])
def test_three_factor_step(change, error, match):
    with pytest.raises(error, match=match):
        _three_factor(**change)


def _network(**change):
    b, n, k = 2, 3, 2
    state = torch.zeros(b, 3 * n + 1)
    args = {"state": state, "v": state[:, :n], "u": state[:, n:2 * n], "synaptic_current": None,
                "drive": torch.zeros(b, n), "spikes": torch.zeros(b, n, dtype=torch.bool),
                "scratch_hc": torch.zeros(b, n), "scratch_t": torch.zeros(b, n),
                "targets": torch.full((b * n, k + 1), 3 * n, dtype=torch.long), "weights": torch.zeros(b * n, k + 1),
                "half_step_ms": 0.25, "k1": 0.01, "k2": 2.25, "u_decay": torch.ones(1, n), "u_v_gain": torch.zeros(1, n),
                "v_reset": torch.zeros(1, n), "v_peak_mv": 30.0}
    args.update(change)
    return izhikevich_network_step_(**args)


@pytest.mark.parametrize("change, error, match", [
    ({"state": torch.zeros(2, 9)}, ValueError, "state"),
    ({"drive": torch.zeros(2, 3, dtype=torch.float64)}, TypeError, "drive"),
    ({"spikes": torch.zeros(2, 3)}, ValueError, "spikes"),
    ({"targets": torch.zeros(5, 3, dtype=torch.long)}, ValueError, "targets"),
    ({"targets": torch.zeros(6, 3, dtype=torch.int32)}, ValueError, "targets"),
    ({"weights": torch.zeros(6, 2)}, ValueError, "weights"),
    ({"drive": np.zeros((2, 3))}, TypeError, "drive"),
])
def test_izhikevich_network_step(change, error, match):
    with pytest.raises(error, match=match):
        _network(**change)


def test_gla_hmm_glm():
    q = torch.zeros(1, 4, 1, 2)
    cases = [
        (lambda: chunk_gla(q, q, q, None, scale=math.nan), ValueError, "scale"),
        (lambda: chunk_gla(q, q, q, None, scale="a"), TypeError, "scale"),
        (lambda: fused_recurrent_gla(q.long(), q.long(), q.long(), None), TypeError, "q"),
        (lambda: chunk_gla(q.tolist(), q, q, None), TypeError, "q"),
        (lambda: scaled_vecmat_scan(np.zeros((1, 2)), torch.zeros(1, 3, 2, 2)), TypeError, "log_initial"),
        (lambda: glm_terms(np.zeros((2, 1, 3)), torch.zeros(2, 3), None, "exp"), TypeError, "eta"),
        (lambda: glm_terms(torch.zeros(2, 1, 3), torch.zeros(2, 3), None, "exp", torch.zeros(2, 1, 3), "x"),
         TypeError, "step"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()

"""``make_reservoir``: build B independent reservoirs (neurons, wiring, inputs, noise)."""
from __future__ import annotations

import numpy as np
import torch

from neuro.checks import check_device
from neuro.reservoir._checks import (
    Seed,
    check_count,
    check_fraction,
    check_positive,
    check_real,
    torch_generator,
)
from neuro.reservoir.connectivity import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    SynapseList,
    _expected_max_degree,
    bernoulli_synapses,
    check_memory,
    estimate_connectivity_bytes,
    fixed_in_degree_synapses,
    matrix_synapses,
    sign_rule_weights,
)
from neuro.reservoir.izhikevich import heterogeneous_izhikevich
from neuro.reservoir.step import SYNAPSE_KINDS, ReservoirParams, ReservoirState, initial_state

__all__ = ["DEFAULT_WEIGHT_SCALE", "make_reservoir"]

# Measured: the default network (N = 1000, K = 100, delta synapses, noise 5 mV/sqrt(ms), dt 0.5 ms)
# fires at ~8 Hz (Izhikevich 2003: ~10 Hz); weight_scale 5 runs away to ~30 Hz, 0.5 gives ~7.5 Hz
DEFAULT_WEIGHT_SCALE = 3.0


def make_reservoir(
    num_neurons: int,
    num_inputs: int,
    *,
    batch_size: int = 1,
    in_degree: int | None = 100,
    connection_prob: float | None = None,
    connectivity=None,
    excitatory_fraction: float = 0.8,
    is_excitatory=None,
    weight_scale: float | None = None,
    inhibitory_scale: float = 2.0,
    sign_rule: str = "presynaptic",
    input_scale: float = 1.0,
    noise_std: float | torch.Tensor = 5.0,
    synapse: str = "delta",
    synapse_tau_ms: float = 5.0,
    trace_tau_ms: float = 20.0,
    refractory_ms: float = 0.0,
    shared_wiring: bool = False,
    seed: Seed = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
) -> tuple[ReservoirParams, ReservoirState]:
    """B reservoirs of ``num_neurons`` heterogeneous Izhikevich neurons.

    Wiring, first match wins: ``connectivity`` (user matrix W[post, pre], dense or
    scipy.sparse, same for every network; entries times ``weight_scale``, default 1; with
    ``sign_rule="presynaptic"`` magnitudes |W| get the presynaptic neuron's sign, with
    ``"as_given"`` W keeps its signs), else ``connection_prob`` (Bernoulli p), else
    ``in_degree`` (fixed K, default 100). Random networks differ across the batch, unless
    ``shared_wiring``: then one random wiring (pre/post pairs) serves every network and
    only the weight magnitudes are drawn per network (a sweep over one connectome; cheaper
    to build for large B).
    Weight magnitudes U(0, weight_scale) (default ``DEFAULT_WEIGHT_SCALE`` mV), inhibitory
    ones times ``inhibitory_scale``. The default scale is measured for delta synapses (a
    spike moves v by w); with ``synapse="exponential"`` a spike adds w to a current that
    decays with ``synapse_tau_ms``, about tau / 1 ms times the charge, and the default
    network runs away (measured at N = 1000, tau 5 ms: ~240 Hz against ~8 Hz with delta
    synapses; ``weight_scale=0.5`` gives ~7 Hz): give it a ``weight_scale``.
    ``noise_std``: mV rms per ms, scalar or [N]; the default 5 for every neuron is our
    choice (Izhikevich 2003 drives excitatory neurons with 5 and inhibitory ones with 2:
    ``noise_std=torch.where(is_excitatory, 5.0, 2.0)`` with dt = 1 ms gives his input).
    ``is_excitatory`` (bool [N]) overrides the first-80%-excitatory assignment, for the
    neuron types (a, b, c, d) and the weights' signs alike.
    The connectivity memory is estimated and checked against ``memory_limit_bytes``
    before anything large is allocated. Returns (params, initial state).

    Seeding: one generator from ``seed`` draws, in this order, the neuron parameters (one
    draw shared by the whole batch: a, b, c, d are [1, N]), the wiring and weights of all B
    networks, then the input weights [B, N, M]. Network b therefore depends on
    ``batch_size``: network 0 of a batch is not the network that ``batch_size=1`` builds
    from the same seed. For networks that do not depend on their batch-mates (a sweep
    point's result independent of how points are batched), build each with
    ``batch_size=1`` from its own seed and stack them, as ``experiments/reservoir_rate.py``
    does; ``simulate`` itself is batch-invariant (each network's run is the one it would
    have alone, given its noise).
    """
    num_neurons = check_count("num_neurons", num_neurons, minimum=1)
    num_inputs = check_count("num_inputs", num_inputs, minimum=0)
    batch_size = check_count("batch_size", batch_size, minimum=1)
    memory_limit_bytes = check_count("memory_limit_bytes", memory_limit_bytes, minimum=1)
    device = check_device("device", device)
    if not isinstance(shared_wiring, bool):
        raise TypeError(f"shared_wiring={shared_wiring!r} must be a bool")
    if synapse not in SYNAPSE_KINDS:
        raise ValueError(f"synapse={synapse!r}; allowed: {', '.join(SYNAPSE_KINDS)}")
    if sign_rule not in ("presynaptic", "as_given"):
        raise ValueError(f"sign_rule={sign_rule!r}; allowed: 'presynaptic', 'as_given'")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype={dtype}; allowed: torch.float32, torch.float64")
    inhibitory_scale = check_positive("inhibitory_scale", inhibitory_scale)
    input_scale = check_real("input_scale", input_scale)
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float, np.number, torch.Tensor, np.ndarray)):
        raise TypeError(f"noise_std={noise_std!r} must be a float >= 0 or a [{num_neurons}] tensor of them")
    noise = torch.as_tensor(noise_std, dtype=torch.float64, device=device)
    if noise.dim() == 0:
        noise = noise.expand(num_neurons)
    if tuple(noise.shape) != (num_neurons,) or not bool(torch.isfinite(noise).all()) or bool((noise < 0).any()):
        raise ValueError(f"noise_std={noise_std!r}: must be a finite float >= 0 or a [{num_neurons}] tensor "
                         "of them")
    weight_bytes = torch.tensor([], dtype=dtype).element_size()
    if connectivity is None:  # validate and size the random wiring before allocating anything
        scale = DEFAULT_WEIGHT_SCALE if weight_scale is None else check_positive("weight_scale", weight_scale)
        if connection_prob is not None:
            p = check_fraction("connection_prob", connection_prob)
            mean_degree = p * (num_neurons - 1)
            check_memory(estimate_connectivity_bytes(
                num_neurons, batch_size, mean_degree * num_neurons * 1.01 + 100,
                _expected_max_degree(mean_degree, num_neurons), weight_bytes),
                memory_limit_bytes, f"the connectivity (connection_prob={p})")
        else:
            if in_degree is None:
                raise ValueError("give in_degree, connection_prob or connectivity (all are None)")
            in_degree = check_count("in_degree", in_degree, minimum=0)
            if in_degree > num_neurons - 1:
                raise ValueError(
                    f"in_degree={in_degree} exceeds num_neurons - 1 = {num_neurons - 1} "
                    "(K distinct presynaptic partners, no autapses)"
                )
            check_memory(estimate_connectivity_bytes(
                num_neurons, batch_size, in_degree * num_neurons,
                _expected_max_degree(in_degree, num_neurons), weight_bytes),
                memory_limit_bytes, f"the connectivity (in_degree={in_degree})")
    generator = torch_generator(seed, device)

    if is_excitatory is not None:
        is_excitatory = torch.as_tensor(is_excitatory, device=device)
        if is_excitatory.dtype != torch.bool or tuple(is_excitatory.shape) != (num_neurons,):
            raise ValueError(
                f"is_excitatory has dtype {is_excitatory.dtype} and shape {list(is_excitatory.shape)}; "
                f"expected a bool tensor [{num_neurons}]"
            )
    # the neuron types follow is_excitatory too (it set only the synapses' signs before)
    neurons, is_excitatory = heterogeneous_izhikevich(
        num_neurons, excitatory_fraction, seed=generator, device=device, dtype=dtype,
        refractory_ms=refractory_ms, is_excitatory=is_excitatory,
    )

    if connectivity is not None:
        scale = 1.0 if weight_scale is None else check_positive("weight_scale", weight_scale)
        batch, pre, post, value = matrix_synapses(connectivity, num_neurons, batch_size, device, torch.float64,
                                                  weight_bytes, memory_limit_bytes)
        if sign_rule == "presynaptic":
            weight = sign_rule_weights(pre, is_excitatory, scale, inhibitory_scale, generator, dtype, magnitude=value)
        else:
            weight = (value * scale).to(dtype)
    else:
        wired = 1 if shared_wiring else batch_size
        if connection_prob is not None:
            batch, pre, post = bernoulli_synapses(num_neurons, float(connection_prob), wired, generator, device)
        else:
            batch, pre, post = fixed_in_degree_synapses(num_neurons, in_degree, wired, generator, device)
        if wired != batch_size:
            count = pre.numel()
            batch = torch.arange(batch_size, device=device).repeat_interleave(count)
            pre, post = pre.repeat(batch_size), post.repeat(batch_size)
        weight = sign_rule_weights(pre, is_excitatory, scale, inhibitory_scale, generator, dtype)

    input_weights = input_scale * torch.randn(
        batch_size, num_neurons, num_inputs, generator=generator, device=device, dtype=torch.float64
    ).to(dtype)
    params = ReservoirParams(
        neurons=neurons, is_excitatory=is_excitatory,
        synapses=SynapseList(batch, pre, post, weight), input_weights=input_weights,
        noise_std=noise.to(dtype).unsqueeze(0), synapse=synapse, synapse_tau_ms=synapse_tau_ms,
        trace_tau_ms=trace_tau_ms, memory_limit_bytes=memory_limit_bytes,
    )
    return params, initial_state(params)


"""Real C. elegans connectomes, offline, from a compact file shipped with the package.

Source: the MIT-licensed C. elegans Connectome Toolbox `cect` 0.3.5 (OpenWorm;
data/LICENSE_cect.txt). `data/derive_celegans.py` read its cached JSON connectomes and its
neuron-class lists straight from the wheel (cect is never installed or imported: its
dependencies are heavy) and wrote `data/celegans_connectomes.npz` (~85 KiB): per dataset the
node names and the chemical-synapse and gap-junction count matrices, [presynaptic,
postsynaptic], exactly as cect caches them.

Datasets: Witvliet et al. 2021 (Nature 596:257), eight hermaphrodites from birth to adulthood
(`witvliet_1`..`witvliet_4` L1, `witvliet_5` L2, `witvliet_6` L3, `witvliet_7`, `witvliet_8`
adult); Cook et al. 2019 hermaphrodite; Varshney et al. 2011; White et al. 1986 (whole animal).
Neuron classes (sensory / interneuron / motor / pharyngeal polymodal / unknown function) are
cect's lists after Cook et al. 2019; anything else (muscles, other cells) is "other".
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import numpy as np

from neuro.connectome._checks import check_choice, check_flag, check_sequence

__all__ = [
    "DATASETS",
    "NEURON_CLASSES",
    "STAGE_NAMES",
    "WITVLIET_STAGES",
    "CElegansConnectomes",
    "load_celegans_connectomes",
    "neuron_class",
]

WITVLIET_STAGES = tuple(f"witvliet_{k}" for k in range(1, 9))
STAGE_NAMES = dict(zip(WITVLIET_STAGES, ("L1", "L1", "L1", "L1", "L2", "L3", "adult", "adult")))
DATASETS = WITVLIET_STAGES + ("cook_2019_hermaphrodite", "varshney_2011", "white_1986_whole")
NEURON_CLASSES = ("sensory", "interneuron", "motor", "pharyngeal_polymodal", "unknown_function")


class CElegansConnectomes(NamedTuple):
    """datasets (D,); neuron_names (N,) aligned across datasets; chemical and gap_junction
    (D, N, N) float64 counts [pre, post], 0 where a neuron is absent; present (D, N) bool;
    neuron_classes (N,) one of NEURON_CLASSES or "other"."""

    datasets: tuple[str, ...]
    neuron_names: tuple[str, ...]
    chemical: np.ndarray
    gap_junction: np.ndarray
    present: np.ndarray
    neuron_classes: tuple[str, ...]


@lru_cache(maxsize=1)
def _archive() -> dict[str, np.ndarray]:
    path = resources.files("neuro.connectome").joinpath("data/celegans_connectomes.npz")
    with resources.as_file(path) as file, np.load(file) as data:
        return {key: data[key] for key in data.files}


@lru_cache(maxsize=1)
def _class_of() -> dict[str, str]:
    archive = _archive()
    mapping: dict[str, str] = {}
    for name in NEURON_CLASSES:  # first listed class wins for the few overlapping names
        for neuron in archive[f"class/{name}"].tolist():
            mapping.setdefault(neuron, name)
    return mapping


def neuron_class(name: str) -> str:
    """Class of a neuron name per cect/Cook 2019 ("other" for non-neurons and unknown names)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a neuron name such as 'AVAL'), got {name!r}")
    return _class_of().get(name, "other")


def load_celegans_connectomes(
    datasets: Sequence[str] = WITVLIET_STAGES,
    *,
    align: str = "common",
    neurons_only: bool = True,
) -> CElegansConnectomes:
    """Load `datasets` aligned on one neuron axis: align="common" keeps the names present in
    every dataset, "union" keeps all (absent ones have zero rows and present=False). Names are
    sorted. neurons_only drops cells outside the neuron classes (muscles, other cells)."""
    check_sequence("datasets", datasets, "a list of dataset names (one name: ('cook_2019_"
                   "hermaphrodite',))")
    datasets = tuple(datasets)
    unknown = [name for name in datasets if name not in DATASETS]
    if unknown or not datasets:
        raise ValueError(f"datasets must be a non-empty subset of {DATASETS}, got {datasets}")
    repeated = sorted({name for name in datasets if datasets.count(name) > 1})
    if repeated:
        raise ValueError(f"datasets names {repeated} more than once, got {datasets}; each dataset "
                         "is one slice of the stack")
    check_choice("align", align, ("common", "union"))
    check_flag("neurons_only", neurons_only)
    archive = _archive()
    names_per = [archive[f"{name}/names"].tolist() for name in datasets]
    sets = [set(names) for names in names_per]
    chosen = set.intersection(*sets) if align == "common" else set.union(*sets)
    if neurons_only:
        chosen = {name for name in chosen if neuron_class(name) != "other"}
    names = tuple(sorted(chosen))
    position = {name: k for k, name in enumerate(names)}
    shape = (len(datasets), len(names), len(names))
    chemical, gap = np.zeros(shape), np.zeros(shape)
    present = np.zeros((len(datasets), len(names)), dtype=bool)
    for d, (dataset, own_names) in enumerate(zip(datasets, names_per)):
        own = np.array([k for k, name in enumerate(own_names) if name in position], dtype=int)
        target = np.array([position[own_names[k]] for k in own], dtype=int)
        present[d, target] = True
        index = np.ix_(target, target)
        chemical[d][index] = archive[f"{dataset}/chemical"][np.ix_(own, own)]
        gap[d][index] = archive[f"{dataset}/gap_junction"][np.ix_(own, own)]
    classes = tuple(neuron_class(name) for name in names)
    return CElegansConnectomes(datasets, names, chemical, gap, present, classes)

"""The shipped C. elegans connectomes: contents, alignment, licence, size."""
from importlib import resources

import numpy as np
import pytest

from neuro.connectome.celegans import (
    DATASETS,
    WITVLIET_STAGES,
    load_celegans_connectomes,
    neuron_class,
)

DATA = resources.files("neuro.connectome").joinpath("data")


def test_shipped_file_is_small_and_licensed():
    with resources.as_file(DATA.joinpath("celegans_connectomes.npz")) as path:
        assert path.stat().st_size < 2 * 1024**2
    licence = DATA.joinpath("LICENSE_cect.txt").read_text()
    assert "MIT License" in licence and "cect" in licence
    assert DATA.joinpath("derive_celegans.py").is_file()


def test_witvliet_series_common_neurons():
    data = load_celegans_connectomes()
    assert data.datasets == WITVLIET_STAGES
    n = len(data.neuron_names)
    assert 150 <= n <= 222 and list(data.neuron_names) == sorted(data.neuron_names)
    assert data.chemical.shape == data.gap_junction.shape == (8, n, n)
    assert data.present.all()
    assert (data.chemical >= 0).all() and (data.chemical == np.round(data.chemical)).all()
    # Witvliet et al. 2021: synapse numbers grow from birth to adulthood
    totals = data.chemical.sum(axis=(1, 2))
    assert totals[-1] > 3 * totals[0]
    # gap junctions are undirected: cect stores them symmetric
    assert np.array_equal(data.gap_junction, data.gap_junction.transpose(0, 2, 1))
    assert {"sensory", "interneuron", "motor"} <= set(data.neuron_classes)


def test_union_alignment_marks_absent_neurons():
    union = load_celegans_connectomes(align="union")
    common = load_celegans_connectomes(align="common")
    assert set(common.neuron_names) <= set(union.neuron_names)
    absent = ~union.present
    assert absent.any()
    d, i = np.argwhere(absent)[0]
    assert union.chemical[d, i].sum() == 0 and union.chemical[d, :, i].sum() == 0
    index = [union.neuron_names.index(name) for name in common.neuron_names]
    np.testing.assert_array_equal(union.chemical[:, index][:, :, index], common.chemical)


def test_other_datasets_and_classes():
    data = load_celegans_connectomes(("cook_2019_hermaphrodite", "varshney_2011",
                                      "white_1986_whole"))
    assert len(data.neuron_names) > 250
    assert neuron_class("AVAL") == "interneuron" and neuron_class("ASHL") == "sensory"
    assert neuron_class("DA1") == "motor" and neuron_class("not-a-neuron") == "other"
    everything = load_celegans_connectomes(("cook_2019_hermaphrodite",), neurons_only=False)
    assert len(everything.neuron_names) > len(load_celegans_connectomes(
        ("cook_2019_hermaphrodite",)).neuron_names)
    assert set(DATASETS) >= set(data.datasets)


@pytest.mark.parametrize("kwargs, message", [
    ({"datasets": ("witvliet_9",)}, "datasets must be"),
    ({"datasets": ()}, "datasets must be"),
    ({"datasets": ("witvliet_1", "witvliet_2", "witvliet_1")}, r"datasets names \['witvliet_1'\] more than once"),
    ({"align": "outer"}, "align must be"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_celegans_connectomes(**kwargs)

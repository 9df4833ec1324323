"""The one seeding rule of the brain-side modules (neuro.seeding)."""
import numpy as np
import pytest
import torch

from neuro.seeding import numpy_generator, torch_generator


def test_int_seed_is_reproducible():
    assert numpy_generator(7).random() == numpy_generator(7).random()
    assert torch.equal(torch.rand(3, generator=torch_generator(7)),
                       torch.rand(3, generator=torch_generator(7)))


def test_a_torch_generator_is_consumed_not_restarted():
    generator = torch.Generator().manual_seed(3)
    first, second = numpy_generator(generator).random(4), numpy_generator(generator).random(4)
    assert not np.array_equal(first, second)
    again = torch.Generator().manual_seed(3)
    assert np.array_equal(numpy_generator(again).random(4), first)


def test_generators_are_used_as_they_are():
    rng = np.random.default_rng(1)
    assert numpy_generator(rng) is rng
    generator = torch.Generator()
    assert torch_generator(generator) is generator


@pytest.mark.parametrize("seed, error, message", [
    (None, TypeError, "seed=None has type NoneType"),
    (True, TypeError, "has type bool"),
    (1.5, TypeError, "has type float"),
    (-1, ValueError, r"seed=-1 is out of range; allowed: an int in \[0, 2\*\*63\)"),
    (2**70, ValueError, r"seed=1180591620717411303424 is out of range"),
])
def test_bad_seeds(seed, error, message):
    with pytest.raises(error, match=message):
        numpy_generator(seed)
    with pytest.raises(error, match=message):
        torch_generator(seed)

"""Seeds as arguments; the one rule is ``neuro.seeding`` (re-exported here)."""

from neuro.seeding import numpy_generator, torch_generator  # noqa: F401

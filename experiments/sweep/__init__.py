"""Parameter sweeps over any registered experiment, as resumable batch jobs.

``neuro sweep NAME --grid a=1,2,3 ...`` (see :mod:`experiments.sweep.cli`) expands a
:class:`~experiments.sweep.spec.SweepSpec` into validated points, runs them on a local
process pool or a Dask cluster (:mod:`experiments.sweep.executors`), and records one tidy
row per point in ``sweep.parquet`` (:mod:`experiments.sweep.table`), keyed by config hash
so that a rerun skips what is done. Importing this package is cheap (no dask, no torch).
"""

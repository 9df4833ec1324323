"""Parameter sweeps over any registered experiment, as resumable batch jobs.

Command line (see ``neuro sweep --help``)::

    neuro sweep hebbian_recall --grid key_dim=16,32,64 --grid trials=10:40:4 --repeats 3
    neuro sweep reservoir_rate --grid drive=0:20:64 --batch 32            # batched points
    neuro sweep NAME --random 100 --grid lr=1e-4:1e-1:log --seed 7         # random search
    neuro sweep NAME --from-file sweep.yaml --executor dask                # LocalCluster
    neuro sweep NAME --grid a=1,2 --scheduler tcp://head:8786              # existing Dask
    neuro sweep NAME --grid a=1,2 --cluster slurm.yaml                     # dask-jobqueue
    neuro sweep NAME --grid a=1,2 --point-timeout 600                      # fail a point after 10 min
    neuro sweep-show runs/sweeps/NAME-<hash8>                              # the table

Python::

    from experiments.registry import load_experiment
    from experiments.sweep.spec import build_spec
    from experiments.sweep.runner import run_sweep

    spec = build_spec("hebbian_recall", load_experiment("hebbian_recall").Config,
                      grid=["key_dim=16,32"], repeats=2)
    result = run_sweep(spec, workers=2)       # call under `if __name__ == "__main__":`
    result.table                               # sweep.parquet: one row per point

Modules: :mod:`~experiments.sweep.spec` and :mod:`~experiments.sweep.values` (what to
run), :mod:`~experiments.sweep.runner` (dispatch, resume, faults),
:mod:`~experiments.sweep.executors` and :mod:`~experiments.sweep.jobqueue` (where),
:mod:`~experiments.sweep.worker` and :mod:`~experiments.sweep.batch` (on the worker),
:mod:`~experiments.sweep.table` (journal and ``sweep.parquet``),
:mod:`~experiments.sweep.report` (``report.html``), :mod:`~experiments.sweep.cli`.
Importing this package is cheap (no dask, no torch).
"""

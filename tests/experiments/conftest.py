"""Fixtures shared by the sweep tests."""
import pytest


@pytest.fixture(scope="module")
def dask_pool():
    """An embedded Dask LocalCluster of 2 workers, one per test module that asks for it."""
    pytest.importorskip("distributed", reason="the Dask executor needs the 'cluster' extra")
    from experiments.sweep.executors import DaskPool

    pool = DaskPool(workers=2)
    yield pool
    pool.close()

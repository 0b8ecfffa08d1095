"""A Dask client: a LocalCluster of worker processes, or an existing cluster by address."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from replay.errors import InputError

# Thread pools every worker process would otherwise size to the whole machine.
_THREAD_VARS = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def threads_per_worker(workers: int) -> int:
    """The machine's cores shared out among the local worker processes (at least 1 each)."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


@contextmanager
def open_client(workers: int = 2, scheduler: str | None = None,
                threads: int | None = None) -> Iterator:
    """A distributed.Client: on `scheduler` (e.g. tcp://host:8786) when given, else on a new
    LocalCluster of `workers` single-task processes on loopback, closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot reach the Dask scheduler "
                             f"({type(exc).__name__}: {exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    threads = threads or threads_per_worker(workers)
    env = {name: str(threads) for name in _THREAD_VARS}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0",
                           silence_logs=logging.ERROR, env=env)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()

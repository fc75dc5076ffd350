"""Where tasks run: in this process one after another, or on a Dask cluster (one task per block or image).

`Engine.run(fn, items, *args)` yields `fn(*args, item)` for every item as the tasks finish (in any order); the
serial engine and the Dask engine run the same functions, so they give the same results. `start_cluster`
makes the client of ``--cluster local[:N]`` (a LocalCluster of N worker processes, one thread each, the cores
shared between them) or ``--scheduler ADDRESS`` (any running Dask scheduler: dask-jobqueue on SLURM/PBS/LSF,
Kubernetes).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from asfyolo_rt.errors import ConfigError


class Engine:
    """Runs tasks serially (client None) or on a Dask client."""

    def __init__(self, client: Any = None) -> None:
        self.client = client

    def run(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:
        items = list(items)
        if self.client is None:
            for it in items:
                yield fn(*args, it)
            return
        from distributed import as_completed

        task = functools.partial(fn, *args) if args else fn
        futures = self.client.map(task, items, pure=False)
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


@dataclass
class Cluster:
    """A Dask client and what to close when done (a LocalCluster this run started; nothing for --scheduler)."""

    client: Any
    dashboard: str | None
    workers: int
    _cluster: Any = None

    @property
    def local(self) -> bool:
        """A LocalCluster this run started (its workers share this machine's cores)."""
        return self._cluster is not None

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def parse_local(spec: str) -> int:
    """--cluster local[:N] -> N (default: the CPU count)."""
    name, _, n = spec.partition(":")
    if name != "local" or (n and not n.isdigit()) or n == "0":
        raise ConfigError(f"--cluster {spec!r}: expected local or local:N with N >= 1 worker processes",
                          hint="e.g. --cluster local:2; for another cluster start it and pass --scheduler ADDRESS")
    return int(n) if n else (os.cpu_count() or 1)


def start_cluster(cluster: str | None = None, scheduler: str | None = None) -> Cluster | None:
    """The client of --cluster local[:N] or --scheduler ADDRESS (None when neither is given)."""
    if cluster is None and scheduler is None:
        return None
    if cluster is not None and scheduler is not None:
        raise ConfigError("--cluster and --scheduler both given", hint="pass one: a local cluster or an address")
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ConfigError("--cluster/--scheduler need Dask distributed", hint="pip install 'asfyolo-rt[large]'"
                          ) from exc
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})",
                              hint="start one (dask scheduler, dask-jobqueue) and pass its tcp://host:port") from exc
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        return Cluster(client, client.dashboard_link, n)
    n = parse_local(cluster or "local")
    lc = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40)
    return Cluster(Client(lc), lc.dashboard_link, n, lc)


def worker_threads(workers: int) -> int:
    """Intra-op threads of each worker's backend: the cores shared between the local workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))

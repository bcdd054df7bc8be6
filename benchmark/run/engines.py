"""Where cells and learner fits run: this machine's processes, a Dask cluster or a Ray cluster.

``alcbench run|suite --backend {local,dask,ray} [--scheduler ADDRESS]``. The local backend
(the default) runs cells in joblib's worker processes and fits learners in the command's own
process. The cluster backends submit every learner fit as a task of its own, once per cache
key, before the cells that need it (on a worker that declares a ``GPU`` resource when the
learner trains on a GPU and the cluster has one), then every cell as a task; each task is
retried up to ``--retries`` times when its worker dies, and a task that still does not come
back is reported as a failed cell, so the tables hold every cell that finished. Without an
address, the command starts a local cluster of ``--jobs`` single-threaded worker processes and
stops it at the end.

Workers read and write the same folders (``--out`` and the posterior cache: a shared or
network file system on a real cluster): cells write their files atomically, and a fit takes a
lock beside its cache entry, so two workers never compute the same fit at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

#: The engines ``--backend`` names.
BACKENDS = ("local", "dask", "ray")
#: How often a task whose worker died is run again before its cell is reported failed.
DEFAULT_RETRIES = 2


class LostTaskError(RuntimeError):
    """A task did not come back from the cluster (its workers died more often than allowed)."""


class Engine(Protocol):
    """Runs calls as tasks and yields ``(index, result)`` as each finishes, in any order; a
    call that raised or was lost yields its exception as the result."""

    name: str

    def map(
        self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, retries: int, gpu: bool = False
    ) -> Iterator[tuple[int, Any]]: ...


class DaskEngine:
    """Tasks on a Dask distributed cluster (futures: each call is one task)."""

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client

    def has_gpus(self) -> bool:
        workers = self.client.scheduler_info().get("workers", {})
        return any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers.values())

    def map(
        self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, retries: int, gpu: bool = False
    ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        resources = {"GPU": 1} if gpu and self.has_gpus() else None
        # Each call carries its own arguments: data scattered to a worker would die with it.
        futures = [
            self.client.submit(fn, *args, retries=retries, resources=resources, pure=False) for args in calls
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            try:
                yield index[future.key], future.result()
            except Exception as exc:  # noqa: BLE001 - the call's own error, or a lost worker
                yield index[future.key], _lost(exc)


class RayEngine:
    """Tasks on a Ray cluster (remote functions: each call is one task)."""

    name = "ray"

    def __init__(self, ray: Any) -> None:
        self.ray = ray

    def map(
        self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, retries: int, gpu: bool = False
    ) -> Iterator[tuple[int, Any]]:
        gpus = 1 if gpu and self.ray.cluster_resources().get("GPU", 0) > 0 else 0
        remote = self.ray.remote(fn).options(max_retries=retries, num_gpus=gpus, num_cpus=1)
        refs = [remote.remote(*args) for args in calls]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield index[ref], self.ray.get(ref)
                except Exception as exc:  # noqa: BLE001
                    yield index[ref], _lost(exc)


def _lost(exc: BaseException) -> BaseException:
    """The exception to report for a task: a call's own error as it is; a dead worker's as
    :class:`LostTaskError`, saying so."""
    kind = type(exc).__name__
    if kind in ("KilledWorker", "WorkerCrashedError", "NodeDiedError", "OwnerDiedError"):
        return LostTaskError(f"its worker died more often than --retries allows ({kind}: {exc})")
    cause = getattr(exc, "cause", None)  # Ray wraps a task's own error
    if kind == "RayTaskError" and isinstance(cause, BaseException):
        return cause
    return exc


@contextmanager
def open_engine(
    backend: str, *, scheduler: str | None = None, workers: int = 1, retries: int = DEFAULT_RETRIES
) -> Iterator[Engine | None]:
    """The engine of ``backend`` for the block: None for ``local``; for ``dask`` and ``ray``, a
    client of the cluster at ``scheduler``, or of a local cluster of ``workers`` processes
    started here and stopped when the block ends, which runs a task whose worker died up to
    ``retries`` more times (a remote Dask scheduler keeps its own ``allowed-failures``).

    Raises:
        ValueError: unknown backend, or ``scheduler`` with the local backend.
        ImportError: the backend's package is not installed (the message says which extra).
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "local":
        if scheduler:
            raise ValueError("--scheduler needs --backend dask or ray")
        yield None
        return
    if backend == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ImportError(f"--backend dask needs Dask: pip install 'alcbench[dask]' ({exc})") from exc
        if scheduler:
            with Client(scheduler) as client:
                yield DaskEngine(client)
            return
        import dask

        # a worker's death counts against its task: after `retries` more, the task is lost
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": retries}),
            LocalCluster(
                n_workers=max(1, workers), threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield DaskEngine(client)
        return
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"--backend ray needs Ray: pip install 'alcbench[ray]' ({exc})") from exc
    if scheduler:
        ray.init(address=scheduler, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    try:
        yield RayEngine(ray)
    finally:
        ray.shutdown()

"""Where blocks of replicate trials run: in this process, a process pool, or a Dask cluster.

Every executor runs :func:`~stalwart.montecarlo.engine.run_block` on the same
``(spec, first_replicate, n_replicates)`` tasks and returns the results in task order, so the
numbers never depend on the executor, the number of workers or the order blocks finish in.

* ``auto`` (the default of ``stalwart simulate``): ``processes`` on every available core when
  there is more than one and the run has at least :data:`AUTO_PROCESSES_FROM` replicate trials
  (a worker costs about a second of imports, so a small run stays ``local``); else ``local``.
* ``local``: one block after another in this process.
* ``processes``: a :class:`concurrent.futures.ProcessPoolExecutor` (``spawn``) of ``workers``.
* ``dask``: a :class:`distributed.Client` connected to ``scheduler`` (a running
  ``dask scheduler``), or to a :class:`distributed.LocalCluster` of ``workers`` single-threaded
  workers started for the run and closed after it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from stalwart.errors import ConfigurationError
from stalwart.montecarlo.engine import Columns, TrialSpec, run_block

__all__ = [
    "AUTO_PROCESSES_FROM",
    "EXECUTORS",
    "BlockTask",
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "available_cores",
    "make_executor",
]

EXECUTORS = ("auto", "local", "processes", "dask")

AUTO_PROCESSES_FROM = 4000
"""Replicate trials in a run from which ``auto`` uses a process pool (below: ``local``)."""

Progress = Callable[[int], None]
"""Called with the number of replicates of each block as it finishes."""


@dataclass(frozen=True)
class BlockTask:
    """One block: replicates ``first .. first + n - 1`` of ``spec``."""

    spec: TrialSpec
    first: int
    n: int


def _run(task: BlockTask) -> Columns:
    return run_block(task.spec, task.first, task.n)


class Executor:
    """Runs block tasks, returns their results in task order; a context manager."""

    name = "local"
    workers = 1

    def map(self, tasks: Sequence[BlockTask], progress: Progress | None = None) -> list[Columns]:
        """Run every task; call ``progress(n)`` as each finishes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (nothing for the local executor)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Name and worker count, for provenance."""
        return {"executor": self.name, "workers": self.workers}


class LocalExecutor(Executor):
    """Blocks one after another in this process."""

    def map(self, tasks: Sequence[BlockTask], progress: Progress | None = None) -> list[Columns]:
        out = []
        for task in tasks:
            out.append(_run(task))
            if progress is not None:
                progress(task.n)
        return out


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""What sets the threads of NumPy's BLAS (OpenBLAS, MKL) in a process, read at its import."""


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Processes started inside run their BLAS on one thread, unless the user set it.

    Each worker is one core's share of the work: with BLAS threads of their own, two workers
    on two cores ran four spinning threads, and the pool was no faster than one process
    (measured: 48 s against 34 s for ``simulate --replicates 20000`` on 2 cores)."""
    added = [name for name in _THREAD_VARIABLES if name not in os.environ]
    os.environ.update(dict.fromkeys(added, "1"))
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class ProcessExecutor(Executor):
    """A pool of ``workers`` processes (``spawn``: safe beside threads, same on every OS)."""

    name = "processes"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )

    def map(self, tasks: Sequence[BlockTask], progress: Progress | None = None) -> list[Columns]:
        with _single_threaded_children():  # the pool starts its workers as tasks are submitted
            futures = {self._pool.submit(_run, task): i for i, task in enumerate(tasks)}
        out: list[Columns | None] = [None] * len(tasks)
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            out[index] = future.result()
            if progress is not None:
                progress(tasks[index].n)
        return [c for c in out if c is not None]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """A Dask ``distributed`` client: to ``scheduler``, or to a LocalCluster of ``workers``."""

    name = "dask"

    def __init__(
        self,
        workers: int,
        scheduler: str | None = None,
        *,
        timeout: float = 10.0,
        processes: bool = True,
    ) -> None:
        try:
            distributed: Any = importlib.import_module("distributed")
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ConfigurationError(
                "--executor dask needs dask[distributed]: pip install 'dask[distributed]'"
            ) from exc
        self.workers = workers
        self.scheduler = scheduler
        self._cluster: Any = None
        if scheduler is None:
            self._cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
            )
            self._client = distributed.Client(self._cluster)
        else:
            try:
                self._client = distributed.Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigurationError(
                    f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                    f"({type(exc).__name__}: {exc}); start one (dask scheduler) and its workers, "
                    "or leave out --scheduler to run a local cluster"
                ) from None
            self.workers = len(self._client.scheduler_info().get("workers", {}))

    def map(self, tasks: Sequence[BlockTask], progress: Progress | None = None) -> list[Columns]:
        distributed: Any = importlib.import_module("distributed")
        futures = self._client.map(_run, list(tasks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Columns | None] = [None] * len(tasks)
        for future in distributed.as_completed(futures):
            i = index[future.key]
            out[i] = future.result()
            if progress is not None:
                progress(tasks[i].n)
        return [c for c in out if c is not None]

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "scheduler": self.scheduler or "LocalCluster"}


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_executor(
    name: str,
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    timeout: float = 10.0,
    replicates: int | None = None,
) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`); ``replicates``, the run's
    replicate trials in all, lets ``auto`` choose (unknown: ``local``).

    Raises
    ------
    ConfigurationError
        An unknown name, a worker count below 1, a scheduler with a non-Dask executor, or an
        unreachable scheduler.
    """
    if name not in EXECUTORS:
        raise ConfigurationError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ConfigurationError(f"--workers must be a whole number >= 1, got {workers}")
    if scheduler is not None and name != "dask":
        raise ConfigurationError("--scheduler applies to --executor dask only")
    count = workers or min(available_cores(), 8)
    if name == "auto":
        big = replicates is not None and replicates >= AUTO_PROCESSES_FROM
        name = "processes" if count > 1 and big else "local"
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(count)
    return DaskExecutor(count, scheduler, timeout=timeout)

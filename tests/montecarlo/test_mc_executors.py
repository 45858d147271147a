"""Executors: same seed, same oc.json numbers in-process, in a process pool and on Dask."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stalwart.errors import ConfigurationError
from stalwart.montecarlo.executors import AUTO_PROCESSES_FROM, DaskExecutor, make_executor
from stalwart.montecarlo.study import run_study

REPLICATES = 300


def _numbers(oc: dict[str, Any]) -> dict[str, Any]:
    """Everything but when and where it ran."""
    out = {k: v for k, v in oc.items() if k != "run"}
    out["provenance"] = {k: v for k, v in oc["provenance"].items() if k != "created"}
    return out


@pytest.fixture(scope="module")
def local_oc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("local")
    return run_study(out, replicates=REPLICATES, seed=3, block=100).oc


def test_processes_give_the_local_numbers(tmp_path: Path, local_oc: dict[str, Any]) -> None:
    oc = run_study(
        tmp_path, replicates=REPLICATES, seed=3, executor="processes", workers=2, block=100
    ).oc
    assert oc["run"]["executor"] == "processes" and oc["run"]["workers"] == 2
    assert _numbers(oc) == _numbers(local_oc)


def test_dask_local_cluster_gives_the_local_numbers(
    tmp_path: Path, local_oc: dict[str, Any]
) -> None:
    with DaskExecutor(2, processes=False) as dask:
        oc = run_study(tmp_path, replicates=REPLICATES, seed=3, executor=dask, block=100).oc
    assert oc["run"]["executor"] == "dask" and oc["run"]["scheduler"] == "LocalCluster"
    assert _numbers(oc) == _numbers(local_oc)


def test_a_different_seed_gives_different_numbers(tmp_path: Path, local_oc: dict[str, Any]) -> None:
    oc = run_study(tmp_path, replicates=REPLICATES, seed=4, block=100).oc
    assert oc["alternative"]["primary"] != local_oc["alternative"]["primary"]


def test_an_unreachable_scheduler_is_a_quick_clear_error() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigurationError, match="cannot reach the Dask scheduler"):
        make_executor("dask", scheduler="tcp://127.0.0.1:9", timeout=2.0)
    assert time.perf_counter() - started < 15


@pytest.mark.parametrize(
    ("name", "workers", "scheduler", "message"),
    [
        ("threads", None, None, "unknown executor 'threads'"),
        ("processes", 0, None, "--workers must be"),
        ("local", None, "tcp://x:1", "--scheduler applies to --executor dask only"),
    ],
)
def test_bad_executor_options(name: str, workers: Any, scheduler: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_executor(name, workers, scheduler)


@pytest.mark.parametrize(
    ("workers", "replicates", "chosen"),
    [
        (2, AUTO_PROCESSES_FROM, "processes"),
        (2, AUTO_PROCESSES_FROM - 1, "local"),  # a small run: worker imports would cost more
        (1, 10 * AUTO_PROCESSES_FROM, "local"),  # one core: nothing to spread over
        (2, None, "local"),  # the run's size unknown
    ],
)
def test_auto_uses_processes_for_big_runs_on_several_cores(
    workers: int, replicates: int | None, chosen: str
) -> None:
    with make_executor("auto", workers, replicates=replicates) as executor:
        assert executor.name == chosen


def test_auto_gives_the_local_numbers(tmp_path: Path, local_oc: dict[str, Any]) -> None:
    oc = run_study(tmp_path, replicates=REPLICATES, seed=3, executor="auto", block=100).oc
    assert _numbers(oc) == _numbers(local_oc)


def test_auto_with_a_scheduler_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="--scheduler applies to --executor dask only"):
        make_executor("auto", None, "tcp://x:1")


def test_pool_workers_run_blas_on_one_thread_unless_the_user_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker is one core's share: processes started by the pool get one BLAS thread; a
    value the user set is kept, and the parent's environment is as it was afterwards."""
    import os
    import subprocess
    import sys

    from stalwart.montecarlo.executors import _single_threaded_children

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    show = "import os; print(os.environ.get('OPENBLAS_NUM_THREADS'), os.environ['OMP_NUM_THREADS'])"
    with _single_threaded_children():
        child = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True)
    assert child.stdout.split() == ["1", "3"]
    assert "OPENBLAS_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ
    assert os.environ["OMP_NUM_THREADS"] == "3"

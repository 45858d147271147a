"""Replicate STALWART trials per second from the vectorized simulator, on one core.

Simulates ``--replicates`` trials of the protocol's 267 participants (in blocks of
``--block`` replicates, so memory stays bounded) with :class:`ReplicateSimulator`, twice: labs at
every scheduled visit, and labs at the visits the primary analysis reads (entry and week 32).
The reference is the per-participant simulator (``simulate_candidate`` + ``simulate_participant``
as the site player calls them, without the database) on ``--reference-trials`` whole trials,
timed in the same run; the ratio is vectorized / per-participant trials per second.

Run it with one thread per process (``OMP_NUM_THREADS=1``; NumPy's random draws and
element-wise kernels are single-threaded anyway).

Usage: python benchmarks/vectorized_sim.py [--replicates 10000] [--block 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time

import numpy as np

from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.eligibility import evaluate_eligibility, validate_screening_answers
from stalwart.protocol.load import load_protocol
from stalwart.simulate.candidates import simulate_candidate
from stalwart.simulate.model import simulate_participant
from stalwart.simulate.vectorized import ReplicateSimulator


def vectorized_rate(protocol, params, visits, replicates: int, block: int, seed: int) -> float:
    simulator = ReplicateSimulator(protocol, params, visits=visits)
    simulator.simulate(100, seed + 1)  # warm-up (imports, caches)
    started = time.perf_counter()
    total = 0
    for data in simulator.blocks(replicates, seed, block_replicates=block):
        total += data.n_replicates
    return total / (time.perf_counter() - started)


def per_participant_rate(protocol, params, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    span = (protocol.study.accrual_end - protocol.study.accrual_start).days
    arms = protocol.arm_codes
    started = time.perf_counter()
    for _ in range(trials):
        for i in range(protocol.study.sample_size):
            while True:
                candidate = simulate_candidate(params, protocol, rng)
                answers = validate_screening_answers(protocol, candidate.answers)
                if not evaluate_eligibility(protocol, answers):
                    break
            day = protocol.study.accrual_start + dt.timedelta(days=int(rng.integers(0, span + 1)))
            calendar = participant_calendar(protocol, arms[i % len(arms)], day)
            simulate_participant(params, protocol, calendar, candidate, rng)
    return trials / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10_000)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reference-trials", type=int, default=3)
    args = parser.parse_args()

    from stalwart.simulate.parameters import load_parameters

    protocol = load_protocol().protocol
    params = load_parameters()
    n = protocol.study.sample_size
    reference = per_participant_rate(protocol, params, args.reference_trials, args.seed)
    print(
        f"per-participant simulator: {reference:.2f} trials/s ({reference * n:.0f} participants/s)"
    )
    for label, visits in (("all scheduled visits", None), ("entry + week 32", ["WK32"])):
        rate = vectorized_rate(protocol, params, visits, args.replicates, args.block, args.seed)
        print(
            f"vectorized, {label:>20}: {rate:8.0f} replicate trials/s "
            f"({rate * n / 1e6:.2f} M participants/s), {rate / reference:,.0f}x per-participant"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"replicates {args.replicates} of {n} participants in blocks of {args.block}; "
        f"peak memory {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()

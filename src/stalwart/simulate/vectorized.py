"""Many replicate STALWART trials at once: the participant model vectorized with NumPy.

:func:`simulate_replicates` draws whole trials (screening, allocation, every participant's course)
from the same calibrated model and parameter file as the per-participant simulator
(:mod:`stalwart.simulate.model`), as arrays shaped ``(replicate, participant[, visit])``, so the
analysis kernels can run across replicates. Each equation is model.py's (both evaluate
:mod:`stalwart.simulate.equations`), in the same order:
dropout day, cycles declined, clinical events (first, then later ones with the doubled hazard,
deaths, treatment stops), cycles started, treatment-related AEs and toxicity rules, IL-2 doses
taken, ART days taken, labs at the visits attended, background AEs, disposition. Only the way of
drawing changes, never the distribution:

* The first-event day solves ``sum_{j<=d} h(j) >= Exp(1)`` in closed form (the daily hazard is
  geometric in the day until the CD4 floor, and constant after it), instead of a cumulative sum
  over every day.
* The IL-2 administrations of a cycle are one binomial over the days not withheld (a sum of
  independent binomials with the same chance); per-participant AE details the outputs do not
  hold (relatedness, seriousness, duration) are not drawn.
* Screening items that do not depend on the latent state (age, sex, the yes/no criteria) pass
  eligibility with a probability computed exactly from their distributions, one uniform draw per
  candidate; the screening CD4 and HIV RNA are drawn as noisy measurements as in candidates.py. The
  first ``sample_size`` eligible candidates of each replicate are kept (oversampling in rounds),
  so eligible participants and the number screened have the per-participant distributions.
* Lab values are what a site records (sites.py): CD4 rounded to a whole count, HIV RNA rounded
  copies/mL or flagged below the assay limit; ``log10_hiv_rna`` puts below-limit values where the
  analysis plan's ``hiv_rna_below_limit`` rule does (as ADSL/ADLB do).

* Each permuted block is a uniformly drawn distinct order of its content (the same law as a
  random permutation), and background AEs are one Poisson count per participant with the term,
  grade and day of each drawn as model.py draws them.

Fidelity
--------
``fidelity="full"`` draws every record the outputs hold. ``fidelity="outcomes"`` draws only what
the analyses of the plan read, each from the same law and the same parameters (nothing is
refitted): enrolment and allocation as above; CD4 at the simulated visits with the same natural
path, IL-2 exposure and measurement error; visit days and missed visits; clinical events,
dropout and dispositions with the same hazards, so censoring (the last contact of the lost to
follow-up included) is unchanged. It skips HIV RNA and ART days (``log10_hiv_rna`` is NaN),
AE grades (``ae_max_grade`` is 0), and draws a cycle's treatment-related AEs as the onset of its
first grade >= 3 one from that onset's exact distribution (one uniform instead of one per term;
withholding and stopping depend on nothing else). Interim looks need only the endpoint visit's
day, which both modes draw. Agreement with the per-participant model and the full mode is tested
in tests/simulate/test_vectorized_outcomes.py.

Allocation is the protocol's stratified permuted blocks with random block sizes
(:mod:`stalwart.randomization.blocks`), drawn per replicate and stratum, in the order sites
randomize (screening date, as :mod:`stalwart.play.sites` plays it): arm counts then vary as
they do in the real trial (at most half a block out of balance per stratum), which simple
fixed 1:1:1 counts would hide. Sites are chosen uniformly, randomization days uniformly over the
accrual period, as sites.py does.

Streams
-------
The unit of randomness is a *stream* of :data:`STREAM_REPLICATES` consecutive replicates:
replicates ``[k * STREAM_REPLICATES, (k + 1) * STREAM_REPLICATES)`` are drawn from one generator
seeded with the ``k``-th child of ``seed_sequence`` (the child a fresh
``seed_sequence.spawn(k + 1)[k]`` gives; computed from the spawn key, so earlier spawns on the
object do not matter). A replicate's data therefore depend only on the seed, the scenario and its
index: any split of ``[0, n)`` into blocks (``first_replicate``), run in any order on any number of
workers, gives the same arrays. Blocks not aligned to streams simulate the streams they touch and
keep their part.

The work is split in private modules: ``_vectorized_plan`` (what is derived once per scenario),
``_vectorized_enrolment`` (screening, strata, allocation) and ``_vectorized_course`` (one arm's
participants through the model); this module holds the public API, the streams and scenarios.

Scenarios
---------
:func:`apply_scenario` overrides the design (``sample_size``, ``allocation_ratio``,
``block_sizes``, ``cycles``) and any scalar model parameter by its key in ``parameters.toml``
(``"il2_event_hazard_ratio"``, ``"dropout_rate_per_year.IL2"``). Calibrated values are not
recalibrated: a scenario asks what the model gives under other values.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
from numpy.typing import NDArray

from stalwart.errors import ConfigurationError
from stalwart.protocol.schema import Protocol
from stalwart.simulate._vectorized_course import COMPLETED, Cohort, empty_outputs
from stalwart.simulate._vectorized_enrolment import allocate, draw_strata, screen
from stalwart.simulate._vectorized_plan import BoolArray, Plan, build_plan
from stalwart.simulate.equations import FloatArray, cd4_decline, il2_response
from stalwart.simulate.parameters import ModelParameters, overridable_keys, override_parameters

__all__ = [
    "DESIGN_KEYS",
    "DISPOSITION_STATUSES",
    "FIDELITIES",
    "STREAM_REPLICATES",
    "ReplicateData",
    "ReplicateSimulator",
    "apply_scenario",
    "scenario_keys",
    "simulate_replicates",
]

STREAM_REPLICATES = 100
"""Replicates drawn from one random stream: the unit that makes blocking reproducible."""

DISPOSITION_STATUSES = ("COMPLETED", "LOST TO FOLLOW-UP", "WITHDREW", "DEATH")
"""Codes of ``ReplicateData.status``, in index order (model.py's disposition statuses)."""

DESIGN_KEYS = ("sample_size", "allocation_ratio", "block_sizes", "cycles")
"""Scenario keys that change the protocol's design rather than a model parameter."""

FIDELITIES = ("full", "outcomes")
"""What a simulator draws: every record, or only what the analyses read (see the module)."""


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ReplicateData:
    """Replicate trials as arrays: axis 0 replicate, axis 1 participant (randomization order).

    Attributes
    ----------
    arms, visits, ae_terms
        Codes behind ``arm``, the visit axis and the AE-term axis.
    first_replicate
        Index of the first replicate held (its stream position).
    arm
        Arm index per participant, into ``arms``.
    randomization_day
        Days from the accrual start to randomization.
    stratum
        Randomization stratum index (protocol strata, ``itertools.product`` order).
    n_screened
        Candidates screened per replicate to randomize ``sample_size``.
    cd4
        Recorded CD4 (cells/mm3, whole counts) per visit; NaN when not recorded (missed, after
        dropout or death).
    visit_day
        Study day of each recorded visit; -1 when not recorded.
    log10_hiv_rna, hiv_rna_below_limit
        log10 HIV RNA as analysed (below-limit values by the plan's rule) and the flag; NaN when
        not recorded.
    first_oi_day, death_day
        Study day of the first opportunistic event and of death; ``inf`` when none.
    status
        Disposition index into :data:`DISPOSITION_STATUSES`.
    end_day
        Study day of the disposition: the last contact (ADSL ``LSTCNDT``) of the living.
    ae_max_grade
        Worst DAIDS grade of any AE (treatment-related or not) per term; 0 when none.
    fidelity
        ``"full"`` or ``"outcomes"`` (then HIV RNA is NaN and ``ae_max_grade`` 0: not drawn).
    """

    arms: tuple[str, ...]
    visits: tuple[str, ...]
    ae_terms: tuple[str, ...]
    first_replicate: int
    arm: NDArray[np.int8]
    randomization_day: NDArray[np.int32]
    stratum: NDArray[np.int16]
    n_screened: NDArray[np.int32]
    cd4: FloatArray
    visit_day: NDArray[np.int16]
    log10_hiv_rna: FloatArray
    hiv_rna_below_limit: BoolArray
    first_oi_day: FloatArray
    death_day: FloatArray
    status: NDArray[np.int8]
    end_day: NDArray[np.int32]
    ae_max_grade: NDArray[np.int8]
    fidelity: str = "full"

    @property
    def n_replicates(self) -> int:
        """Number of replicates held."""
        return int(self.arm.shape[0])

    @property
    def baseline_cd4(self) -> FloatArray:
        """CD4 at the baseline (first scheduled) visit, always recorded."""
        out: FloatArray = self.cd4[:, :, 0]
        return out

    @property
    def completed(self) -> BoolArray:
        """Followed alive to the end of follow-up."""
        out: BoolArray = self.status == COMPLETED
        return out

    def visit(self, code: str) -> int:
        """Index of visit ``code`` on the visit axis."""
        if code not in self.visits:
            raise ConfigurationError(f"visit {code!r} was not simulated; simulated: {self.visits}")
        return self.visits.index(code)

    def time_to_event(
        self, categories: Sequence[str] = ("OPPORTUNISTIC", "DEATH")
    ) -> tuple[FloatArray, BoolArray]:
        """(days to the first event of ``categories``, event), censored at the last contact.

        As ADTTE derives it: AVAL in days from randomization, CNSR = ``~event``.
        """
        unknown = sorted(set(categories) - {"OPPORTUNISTIC", "DEATH"})
        if unknown:
            raise ConfigurationError(
                f"event categories {unknown} are not simulated; use OPPORTUNISTIC and/or DEATH"
            )
        first = np.full(self.death_day.shape, np.inf)
        if "OPPORTUNISTIC" in categories:
            first = np.minimum(first, self.first_oi_day)
        if "DEATH" in categories:
            first = np.minimum(first, self.death_day)
        event: BoolArray = np.isfinite(first)
        time: FloatArray = np.where(event, first, self.end_day.astype(np.float64))
        return time, event

    @classmethod
    def concatenate(cls, parts: Sequence[ReplicateData]) -> ReplicateData:
        """Consecutive blocks joined along the replicate axis."""
        if not parts:
            raise ConfigurationError("no replicate blocks to join")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            first = getattr(parts[0], field.name)
            if isinstance(first, np.ndarray):
                values[field.name] = np.concatenate([getattr(p, field.name) for p in parts])
            else:
                values[field.name] = first
        return cls(**values)


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------
def scenario_keys(params: ModelParameters) -> list[str]:
    """Every name a scenario may override: the design keys, then the model parameters."""
    return list(DESIGN_KEYS) + overridable_keys(params)


def apply_scenario(
    protocol: Protocol, params: ModelParameters, overrides: Mapping[str, Any]
) -> tuple[Protocol, ModelParameters]:
    """The protocol and parameters with a scenario's overrides applied and validated again.

    Parameters
    ----------
    protocol, params
        The design and the model to start from.
    overrides
        ``sample_size`` (int), ``allocation_ratio`` (``{arm: int}``), ``block_sizes``
        (list of int), ``cycles`` (IL-2 cycles per participant: every treatment with its own
        cycles), and model parameters by key (``"name"`` or ``"name.code"``) with numbers.

    Raises
    ------
    ConfigurationError
        A name is not a design key or a scalar parameter (the message lists the valid names), or
        a value is invalid.
    """
    valid = scenario_keys(params)
    for key in overrides:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigurationError(
                f"scenario: unknown name {key!r}{hint}; valid names: {', '.join(valid)}"
            )
    design = {k: v for k, v in overrides.items() if k in DESIGN_KEYS}
    model = {k: v for k, v in overrides.items() if k not in DESIGN_KEYS}
    if design:
        protocol = _design_protocol(protocol, design)
    if model:
        params = override_parameters(params, model)
    return protocol, params


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"scenario {key}: must be a positive whole number, got {value!r}")
    return value


def _design_protocol(protocol: Protocol, design: Mapping[str, Any]) -> Protocol:
    data = protocol.model_dump(mode="json")
    if "sample_size" in design:
        data["study"]["sample_size"] = _positive_int("sample_size", design["sample_size"])
    if "allocation_ratio" in design:
        _set_ratios(protocol, data, design["allocation_ratio"])
    if "block_sizes" in design:
        sizes = design["block_sizes"]
        if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence) or not sizes:
            raise ConfigurationError("scenario block_sizes: give a list of positive whole numbers")
        data["randomization"]["block_sizes"] = [_positive_int("block_sizes", s) for s in sizes]
    if "cycles" in design:
        cycles = _positive_int("cycles", design["cycles"])
        for treatment in data["treatments"].values():
            if treatment.get("cycles") is not None:
                treatment["cycles"] = cycles
    try:
        return Protocol.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"scenario: the design is not valid: {problems}") from None


def _set_ratios(protocol: Protocol, data: dict[str, Any], ratio: object) -> None:
    if not isinstance(ratio, Mapping):
        raise ConfigurationError(
            f"scenario allocation_ratio: give {{arm: ratio}} for arms {protocol.arm_codes}"
        )
    for arm in ratio:
        if arm not in protocol.arm_codes:
            raise ConfigurationError(
                f"scenario allocation_ratio: unknown arm {arm!r}; arms: {protocol.arm_codes}"
            )
    for entry in data["arms"]:
        if entry["code"] in ratio:
            entry["ratio"] = _positive_int(
                f"allocation_ratio.{entry['code']}", ratio[entry["code"]]
            )


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
class ReplicateSimulator:
    """The vectorized model for one (protocol, parameters, scenario), ready to draw replicates.

    Parameters
    ----------
    protocol, params
        The design and the calibrated model (``load_parameters()``).
    scenario
        Overrides applied first (:func:`apply_scenario`).
    visits
        Scheduled visit codes to simulate labs at (default: every scheduled visit); the
        baseline visit is always included. Fewer visits draw faster.
    fidelity
        ``"full"`` (every record) or ``"outcomes"`` (what the analyses read; see the module).
    """

    def __init__(
        self,
        protocol: Protocol,
        params: ModelParameters,
        *,
        scenario: Mapping[str, Any] | None = None,
        visits: Sequence[str] | None = None,
        fidelity: str = "full",
    ) -> None:
        if fidelity not in FIDELITIES:
            raise ConfigurationError(
                f"fidelity must be one of {', '.join(FIDELITIES)}, got {fidelity!r}"
            )
        self.fidelity = fidelity
        if scenario:
            protocol, params = apply_scenario(protocol, params, scenario)
        scheduled = [v.code for v in protocol.visits]
        wanted = list(scheduled) if visits is None else list(visits)
        unknown = [v for v in wanted if v not in scheduled]
        if unknown:
            raise ConfigurationError(
                f"visits {unknown} are not scheduled visits of the protocol; scheduled: {scheduled}"
            )
        chosen = tuple(v for v in scheduled if v in wanted or v == scheduled[0])
        self.protocol = protocol
        self.params = params
        self._plan = build_plan(protocol, params, chosen)

    @property
    def arms(self) -> tuple[str, ...]:
        """Arm codes, in the order of ``ReplicateData.arm``."""
        return tuple(a.code for a in self._plan.arms)

    @property
    def visits(self) -> tuple[str, ...]:
        """Visit codes simulated."""
        return self._plan.visits

    def simulate(
        self,
        n_replicates: int,
        seed_sequence: np.random.SeedSequence | int,
        first_replicate: int = 0,
    ) -> ReplicateData:
        """Replicates ``first_replicate .. first_replicate + n_replicates - 1`` of the seed."""
        seed = _seed_sequence(seed_sequence)
        _check_count("n_replicates", n_replicates, 1)
        _check_count("first_replicate", first_replicate, 0)
        end = first_replicate + n_replicates
        outcomes = self.fidelity == "outcomes"
        arrays: dict[str, np.ndarray] = {}
        for stream in range(first_replicate // STREAM_REPLICATES, -(-end // STREAM_REPLICATES)):
            start = stream * STREAM_REPLICATES
            chunk = _simulate_stream(self._plan, self.params, _child(seed, stream), outcomes)
            lo, hi = max(first_replicate - start, 0), min(end - start, STREAM_REPLICATES)
            at = start + lo - first_replicate
            for key, value in chunk.items():  # into arrays allocated once, not concatenated
                if key not in arrays:
                    arrays[key] = np.empty((n_replicates, *value.shape[1:]), dtype=value.dtype)
                arrays[key][at : at + hi - lo] = value[lo:hi]
        return ReplicateData(
            arms=self.arms,
            visits=self._plan.visits,
            ae_terms=self._plan.ae_terms,
            first_replicate=first_replicate,
            fidelity=self.fidelity,
            **arrays,
        )

    def blocks(
        self,
        n_replicates: int,
        seed_sequence: np.random.SeedSequence | int,
        block_replicates: int = 10 * STREAM_REPLICATES,
    ) -> Iterator[ReplicateData]:
        """Replicates ``0 .. n_replicates - 1`` in consecutive blocks (bounded memory)."""
        _check_count("n_replicates", n_replicates, 1)
        _check_count("block_replicates", block_replicates, 1)
        for first in range(0, n_replicates, block_replicates):
            yield self.simulate(min(block_replicates, n_replicates - first), seed_sequence, first)


def simulate_replicates(
    protocol: Protocol,
    params: ModelParameters,
    n_replicates: int,
    seed_sequence: np.random.SeedSequence | int,
    *,
    first_replicate: int = 0,
    scenario: Mapping[str, Any] | None = None,
    visits: Sequence[str] | None = None,
    fidelity: str = "full",
) -> ReplicateData:
    """Draw ``n_replicates`` replicate trials (see :class:`ReplicateSimulator` and the module)."""
    simulator = ReplicateSimulator(
        protocol, params, scenario=scenario, visits=visits, fidelity=fidelity
    )
    return simulator.simulate(n_replicates, seed_sequence, first_replicate)


def _check_count(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise ConfigurationError(f"{name} must be a whole number >= {least}, got {value!r}")


def _seed_sequence(seed: np.random.SeedSequence | int) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigurationError(
            f"the seed must be a numpy SeedSequence or a non-negative integer, got {seed!r}"
        )
    return np.random.SeedSequence(int(seed))


def _child(seed: np.random.SeedSequence, stream: int) -> np.random.SeedSequence:
    """``seed.spawn(stream + 1)[stream]`` of a fresh ``seed``, whatever it has spawned since."""
    return np.random.SeedSequence(
        seed.entropy, spawn_key=(*seed.spawn_key, stream), pool_size=seed.pool_size
    )


def _simulate_stream(
    plan: Plan, params: ModelParameters, seed: np.random.SeedSequence, outcomes: bool = False
) -> dict[str, np.ndarray]:
    """One stream's replicates: screening, allocation, then every arm's cohort."""
    rng = np.random.default_rng(seed)
    reps, n = STREAM_REPLICATES, plan.sample_size
    randomization_day = np.sort(rng.integers(0, plan.accrual_span + 1, (reps, n)), axis=1)
    people, screened = screen(plan, params, rng, reps)
    stratum = draw_strata(plan, rng, reps, n)
    arm = allocate(plan, rng, randomization_day, stratum)
    p = params
    decline = cd4_decline(p, people["setpoint"], rng.standard_normal((reps, n)))
    response = il2_response(p, rng.standard_normal((reps, n)))
    theta = p.frailty_variance.value
    frailty = rng.gamma(1.0 / theta, theta, (reps, n)) if theta > 0 else np.ones((reps, n))
    latent = {
        **people,
        "decline": decline,
        "response": response,
        "frailty": frailty,
        "end_day": np.maximum(plan.longest - randomization_day, 0).astype(np.float64),
    }
    flat_arm = arm.ravel()
    out = empty_outputs(plan, reps * n)
    for index, arm_plan in enumerate(plan.arms):
        who = np.flatnonzero(flat_arm == index)
        if len(who):
            cohort = Cohort(
                plan,
                params,
                arm_plan,
                rng,
                {k: v.ravel()[who] for k, v in latent.items()},
                outcomes,
            )
            for key, value in cohort.run().items():
                out[key][who] = value
    shaped = {k: v.reshape((reps, n, *v.shape[1:])) for k, v in out.items()}
    return {
        "arm": arm.astype(np.int8),
        "randomization_day": randomization_day.astype(np.int32),
        "stratum": stratum.astype(np.int16),
        "n_screened": screened.astype(np.int32),
        **shaped,
    }

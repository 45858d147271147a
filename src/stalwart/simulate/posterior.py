"""Calibration with uncertainty: priors from external evidence, updated by STALWART's counts.

``priors.toml`` (beside ``parameters.toml``) gives each key parameter a prior with its source
(the control event rate, the IL-2 event hazard ratio and its exposure window, the CD4 gain per
cycle and the transient's decay, dropout per arm) and lists STALWART's published figures. The
likelihood of those figures under the model's own expectations
(:mod:`~stalwart.simulate.calibration`: the quadrature that once solved for them exactly) is

* binomial for the events: 1 of 91 on no therapy, 12 of 176 in the IL-2 arms pooled;
* normal for the week-32 CD4 differences, +134 and +133 with their (derived) standard errors;
* binomial for the completions, 83/91, 78/89, 74/87.

:func:`sample_posterior` draws from the posterior by adaptive random-walk Metropolis in an
unconstrained space (log for the lognormal priors, logit for the bounded ones), several chains
from dispersed starts; :func:`diagnostics` gives the split R-hat and the effective sample size of
each parameter. ``python -m stalwart.simulate.posterior_checks`` regenerates ``posterior.csv`` (the
sample shipped beside the parameters) and writes, into ``--report DIR``, ``posterior.json``
(diagnostics, the 95% posterior predictive interval of each published figure, the held-out
checks) and ``prior_vs_posterior.png``. :mod:`~stalwart.simulate.posterior_checks` computes the
predictive intervals and held-out checks.
"""

from __future__ import annotations

import csv
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from stalwart.errors import ConfigurationError
from stalwart.protocol.schema import Protocol
from stalwart.simulate.calibration import EventExpectations, week32_gain
from stalwart.simulate.equations import FloatArray
from stalwart.simulate.parameters import ModelParameters
from stalwart.simulate.vectorized import apply_scenario

__all__ = [
    "Posterior",
    "Prior",
    "PriorFile",
    "default_posterior_path",
    "default_priors_path",
    "diagnostics",
    "load_posterior_sample",
    "load_priors",
    "posterior_medians",
    "sample_posterior",
    "write_posterior_sample",
]

_KINDS = ("lognormal", "normal", "uniform")


def default_priors_path() -> Path:
    """The packaged priors file."""
    return Path(str(resources.files("stalwart.simulate") / "priors.toml"))


def default_posterior_path() -> Path:
    """The packaged posterior sample (``posterior.csv``, one draw a row)."""
    return Path(str(resources.files("stalwart.simulate") / "posterior.csv"))


@dataclass(frozen=True)
class Prior:
    """One parameter's prior: ``kind`` with its two numbers, bounds, and the source cited."""

    name: str
    kind: str
    a: float  # lognormal: median; normal: mean; uniform: lower
    b: float  # lognormal: log sd; normal: sd; uniform: upper
    lower: float
    upper: float
    source: str

    def log_density(self, x: float) -> float:
        """Log prior density at ``x`` (-inf outside the bounds), up to a constant."""
        if not self.lower <= x <= self.upper:
            return -math.inf
        if self.kind == "lognormal":
            z = (math.log(x) - math.log(self.a)) / self.b
            return -0.5 * z * z - math.log(x)
        if self.kind == "normal":
            z = (x - self.a) / self.b
            return -0.5 * z * z
        return 0.0

    def to_free(self, x: float) -> float:
        """The unconstrained coordinate of ``x``."""
        if self.kind == "lognormal":
            return math.log(x)
        if self.kind == "uniform":
            return float(special.logit((x - self.a) / (self.b - self.a)))
        return x

    def from_free(self, u: float) -> tuple[float, float]:
        """``x`` at the unconstrained ``u`` and ``log |dx/du|``."""
        if self.kind == "lognormal":
            return math.exp(u), u
        if self.kind == "uniform":
            s = float(special.expit(u))
            width = self.b - self.a
            return self.a + width * s, math.log(width) + math.log(max(s * (1.0 - s), 1e-300))
        return u, 0.0

    def draw(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Independent draws (within the bounds), for the prior-vs-posterior plot."""
        out = np.empty(0)
        while out.size < size:
            if self.kind == "lognormal":
                x = self.a * np.exp(self.b * rng.standard_normal(size))
            elif self.kind == "normal":
                x = self.a + self.b * rng.standard_normal(size)
            else:
                x = rng.uniform(self.a, self.b, size)
            out = np.concatenate([out, x[(x >= self.lower) & (x <= self.upper)]])
        return out[:size]

    def free_scale(self) -> float:
        """A spread on the unconstrained scale, for the first proposals."""
        if self.kind == "lognormal":
            return self.b
        if self.kind == "uniform":
            return 1.5
        return self.b


@dataclass(frozen=True)
class PriorFile:
    """The priors in file order and the published figures of ``[data]``."""

    priors: tuple[Prior, ...]
    data: Mapping[str, Any]
    source: str

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names (scenario keys, dotted for table entries)."""
        return tuple(p.name for p in self.priors)


def _prior(name: str, entry: Mapping[str, Any]) -> Prior:
    kind = entry.get("kind")
    if kind not in _KINDS:
        raise ConfigurationError(f"prior {name}: kind must be one of {_KINDS}, got {kind!r}")
    try:
        if kind == "lognormal":
            a, b = float(entry["median"]), float(entry["log_sd"])
            lower, upper = float(entry.get("lower", 0.0)), float(entry.get("upper", math.inf))
        elif kind == "normal":
            a, b = float(entry["mean"]), float(entry["sd"])
            lower, upper = float(entry.get("lower", -math.inf)), float(entry.get("upper", math.inf))
        else:
            a, b = float(entry["lower"]), float(entry["upper"])
            lower, upper = a, b
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"prior {name}: missing or bad number ({exc})") from None
    if b <= 0 or (kind == "uniform" and not a < b) or (kind == "lognormal" and a <= 0):
        raise ConfigurationError(f"prior {name}: the spread must be positive and bounds ordered")
    if not str(entry.get("source", "")).strip():
        raise ConfigurationError(f"prior {name}: cite its source")
    return Prior(name, str(kind), a, b, lower, upper, str(entry["source"]))


def load_priors(path: Path | None = None) -> PriorFile:
    """Read and check a priors file (the packaged one by default)."""
    file = path or default_priors_path()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read the priors file {file}: {exc}") from None
    priors = tuple(_prior(name, entry) for name, entry in data.get("prior", {}).items())
    if not priors or "data" not in data:
        raise ConfigurationError(f"{file}: needs [prior.*] tables and a [data] section")
    return PriorFile(priors, data["data"], str(file))


class Posterior:
    """Log prior plus log likelihood of STALWART's figures, at a vector of parameter values."""

    def __init__(
        self, priors: PriorFile, params: ModelParameters, protocol: Protocol, nodes: int = 4
    ) -> None:
        self.priors = priors
        self.params = params
        self.protocol = protocol
        self._events = EventExpectations(params, protocol, nodes)
        data = priors.data
        self._control = data["events"]["control"]
        self._treated = data["events"]["treated"]
        self._cd4 = {k: v for k, v in data["cd4"].items() if isinstance(v, dict)}
        self._completion = {k: v for k, v in data["completion"].items() if isinstance(v, dict)}
        self.arms = tuple(protocol.arm_codes)

    def values(self, free: FloatArray) -> tuple[dict[str, float], float]:
        """Parameter values at the unconstrained ``free`` and the log Jacobian."""
        out: dict[str, float] = {}
        jacobian = 0.0
        for prior, u in zip(self.priors.priors, free, strict=True):
            x, log_j = prior.from_free(float(u))
            out[prior.name] = x
            jacobian += log_j
        return out, jacobian

    def model_parameters(self, values: Mapping[str, float]) -> ModelParameters:
        """The model's parameters with ``values`` applied (scenario keys)."""
        _, params = apply_scenario(self.protocol, self.params, dict(values))
        return params

    def expectations(self, values: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Expected event and completion proportions and CD4 differences by arm."""
        base = self.params
        dropout = {
            a: values.get(f"dropout_rate_per_year.{a}", base.dropout_rate_per_year[a].value)
            for a in self.arms
        }
        events, done = self._events(
            values.get("event_rate_at_reference_cd4", base.event_rate_at_reference_cd4.value),
            values.get("il2_event_hazard_ratio", base.il2_event_hazard_ratio.value),
            values.get("il2_excess_hazard_window_days", base.il2_excess_hazard_window_days.value),
            dropout,
        )
        params = self.model_parameters({k: v for k, v in values.items() if k.startswith("il2_cd4")})
        gain = params.il2_cd4_persistent_gain_per_cycle.value
        cd4 = {a: gain * week32_gain(params, self.protocol, a) for a in self._cd4}
        return {"events": events, "completion": done, "cd4": cd4}

    def log_likelihood(self, values: Mapping[str, float]) -> float:
        """Log likelihood of the published figures (binomial, normal, binomial)."""
        from scipy import stats  # only the posterior's fit needs it (half a second to import)

        expected = self.expectations(values)
        events = expected["events"]
        p_treated = float(np.mean([events[a] for a in self._treated["arms"]]))
        ll = float(stats.binom.logpmf(self._treated["events"], self._treated["n"], p_treated))
        control = self._control
        ll += float(stats.binom.logpmf(control["events"], control["n"], events[control["arm"]]))
        for arm, figure in self._cd4.items():
            ll += float(stats.norm.logpdf(figure["difference"], expected["cd4"][arm], figure["se"]))
        for arm, figure in self._completion.items():
            p = min(max(expected["completion"][arm], 1e-12), 1.0 - 1e-12)
            ll += float(stats.binom.logpmf(figure["completed"], figure["n"], p))
        return ll

    def log_target(self, free: FloatArray) -> float:
        """Log posterior density on the unconstrained scale (with the Jacobian)."""
        values, jacobian = self.values(free)
        lp = sum(p.log_density(values[p.name]) for p in self.priors.priors)
        if not math.isfinite(lp):
            return -math.inf
        decay = values.get("il2_cd4_transient_decay_time_constant")
        if decay is not None and decay <= self.params.il2_cd4_transient_rise_time_constant.value:
            return -math.inf
        ll = self.log_likelihood(values)
        return lp + jacobian + ll if math.isfinite(ll) else -math.inf


def sample_posterior(
    posterior: Posterior,
    *,
    chains: int = 4,
    warmup: int = 600,
    draws: int = 1500,
    seed: int = 20,
) -> tuple[FloatArray, FloatArray]:
    """Adaptive random-walk Metropolis: draws ``(chains, draws, parameters)`` and acceptance.

    Chains start from prior draws. During warmup the proposal is rescaled towards a 25%
    acceptance, and from its second half follows the chains' pooled covariance (``2.38^2 / d``
    times it); the kept draws use the proposal as warmup left it.
    """
    rng = np.random.default_rng(seed)
    priors = posterior.priors.priors
    d = len(priors)
    scale = np.array([p.free_scale() for p in priors]) * 0.3
    covariance = np.diag(scale**2)
    current = np.array(
        [[p.to_free(float(p.draw(rng, 1)[0])) for p in priors] for _ in range(chains)]
    )
    target = np.array([posterior.log_target(x) for x in current])
    for c in range(chains):  # a start the likelihood rules out is redrawn
        while not math.isfinite(target[c]):
            current[c] = [p.to_free(float(p.draw(rng, 1)[0])) for p in priors]
            target[c] = posterior.log_target(current[c])
    kept = np.empty((chains, draws, d))
    accepted = np.zeros(chains)
    history: list[FloatArray] = []
    factor = 1.0
    for step in range(warmup + draws):
        chol = np.linalg.cholesky(covariance * factor + 1e-12 * np.eye(d))
        moves = 0
        for c in range(chains):
            proposal = current[c] + chol @ rng.standard_normal(d)
            value = posterior.log_target(proposal)
            if math.log(rng.random()) < value - target[c]:
                current[c], target[c] = proposal, value
                moves += 1
                if step >= warmup:
                    accepted[c] += 1
            if step >= warmup:
                kept[c, step - warmup] = [
                    p.from_free(float(u))[0] for p, u in zip(priors, current[c], strict=True)
                ]
        if step < warmup:
            history.append(current.copy())
            factor *= math.exp((moves / chains - 0.25) * 0.1)
            if step == warmup // 2 and step > d:
                pooled = np.concatenate(history[len(history) // 2 :])
                covariance = np.cov(pooled.T) * 2.38**2 / d + 1e-8 * np.eye(d)
                factor = 1.0
    return kept, accepted / max(draws, 1)


def _split_chains(x: FloatArray) -> FloatArray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, half : 2 * half]], axis=0)


def _rhat(x: FloatArray) -> float:
    """Split R-hat of one parameter's ``(chains, draws)`` (Gelman et al., BDA3 §11.4)."""
    s = _split_chains(x)
    n = s.shape[1]
    between = n * np.var(s.mean(axis=1), ddof=1)
    within = np.mean(np.var(s, axis=1, ddof=1))
    if within <= 0:
        return math.nan
    return float(math.sqrt(((n - 1) / n * within + between / n) / within))


def _ess(x: FloatArray) -> float:
    """Effective sample size of ``(chains, draws)``: Geyer's initial positive sequence on the
    chains' pooled autocorrelation (BDA3 §11.5)."""
    s = _split_chains(x)
    m, n = s.shape
    centred = s - s.mean(axis=1, keepdims=True)
    variance = np.var(s, axis=1, ddof=1).mean() * (n - 1) / n + np.var(s.mean(axis=1), ddof=1)
    if variance <= 0:
        return math.nan
    spectrum = np.fft.rfft(centred, n=2 * n, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), axis=1)[:, :n].real / n
    rho = 1.0 - (np.mean(np.var(s, axis=1, ddof=1)) - acov.mean(axis=0)) / variance
    total = 0.0
    for t in range(1, n - 1, 2):
        pair = rho[t] + rho[t + 1]
        if pair < 0:
            break
        total += pair
    return float(m * n / (1.0 + 2.0 * total))


def diagnostics(names: Sequence[str], draws: FloatArray) -> dict[str, dict[str, float]]:
    """Per parameter: posterior mean, 2.5/50/97.5% quantiles, split R-hat and ESS."""
    out = {}
    for j, name in enumerate(names):
        x = draws[:, :, j]
        q025, q50, q975 = np.quantile(x, [0.025, 0.5, 0.975])
        out[name] = {
            "mean": float(x.mean()),
            "q025": float(q025),
            "median": float(q50),
            "q975": float(q975),
            "rhat": _rhat(x),
            "ess": _ess(x),
        }
    return out


def write_posterior_sample(path: Path, names: Sequence[str], draws: FloatArray) -> None:
    """One draw a row (chains after each other), a header of parameter names."""
    flat = draws.reshape(-1, draws.shape[-1])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chain", *names])
        per_chain = draws.shape[1]
        for i, row in enumerate(flat):
            writer.writerow([i // per_chain, *(f"{v:.6g}" for v in row)])


def load_posterior_sample(path: Path | None = None) -> tuple[tuple[str, ...], FloatArray]:
    """Parameter names and the ``(draws, parameters)`` sample of a posterior file."""
    file = path or default_posterior_path()
    try:
        with file.open(encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the posterior sample {file}: {exc}") from None
    if len(rows) < 2 or rows[0][:1] != ["chain"]:
        raise ConfigurationError(f"{file} is not a posterior sample (header: chain, names...)")
    try:
        values = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    except ValueError as exc:
        raise ConfigurationError(f"{file}: a value is not a number ({exc})") from None
    return tuple(rows[0][1:]), values


def posterior_medians(path: Path | None = None) -> dict[str, float]:
    """Each parameter's posterior median over a sample (the packaged one by default), as
    scenario overrides: the point ``stalwart demo`` plays its one trial at."""
    names, values = load_posterior_sample(path)
    return {name: float(np.median(values[:, j])) for j, name in enumerate(names)}

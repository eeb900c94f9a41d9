"""Synthetic serving traces: arrival processes and length distributions, seeded.

A :class:`GeneratorSpec` says how many requests, how they arrive (Poisson, or Gamma for
burstier traffic with a coefficient of variation above 1) and how long prompts and
outputs are (fixed, uniform, lognormal with a target mean, or empirical resampling of
observed lengths). :func:`generate` turns it into a :class:`RequestTrace`; the same spec
and seed give the same trace on every machine.

On the command line a distribution is one string, ``kind:key=value,...``::

    fixed:value=128        uniform:low=64,high=512
    lognormal:mean=1155,sigma=0.5,max=8192
    empirical:file=lengths.csv,column=ContextTokens
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from profiles.errors import ClusterSimError, format_validation_error
from workloads.schema import RequestTrace

__all__ = [
    "ArrivalSpec",
    "ChatSpec",
    "GeneratorSpec",
    "LengthSpec",
    "generate",
    "generate_chat",
    "lognormal_mu_for_mean",
    "parse_distribution",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PoissonArrivals(_Spec):
    """Exponential inter-arrival times at ``rate_per_s``."""

    kind: Literal["poisson"] = "poisson"
    rate_per_s: float = Field(gt=0)


class GammaArrivals(_Spec):
    """Gamma inter-arrival times at ``rate_per_s``; ``cv`` > 1 is burstier than Poisson."""

    kind: Literal["gamma"] = "gamma"
    rate_per_s: float = Field(gt=0)
    cv: float = Field(gt=0, description="coefficient of variation of inter-arrival times")


ArrivalSpec = Annotated[PoissonArrivals | GammaArrivals, Field(discriminator="kind")]


class FixedLengths(_Spec):
    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1)


class UniformLengths(_Spec):
    """Integers uniform on [low, high]."""

    kind: Literal["uniform"] = "uniform"
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLengths:
        if self.high < self.low:
            raise ValueError(f"high={self.high} is below low={self.low}")
        return self


class LognormalLengths(_Spec):
    """Lognormal lengths rounded and clipped to [min, max], with ``mean`` after clipping.

    ``sigma`` is the standard deviation of log-length: mean/median = exp(sigma^2 / 2) before
    clipping, so a trace's published mean and median give sigma.
    """

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    sigma: float = Field(gt=0)
    min: int = Field(default=1, ge=1)
    max: int = Field(default=1_000_000, ge=1)

    @model_validator(mode="after")
    def _mean_reachable(self) -> LognormalLengths:
        if not self.min < self.mean < self.max:
            raise ValueError(f"mean={self.mean} must lie strictly between min={self.min} "
                             f"and max={self.max}")
        return self


class EmpiricalLengths(_Spec):
    """Resample observed lengths: given inline, or a column of a CSV file."""

    kind: Literal["empirical"] = "empirical"
    values: list[int] | None = None
    file: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalLengths:
        if (self.values is None) == (self.file is None):
            raise ValueError("give either values or file (with column)")
        if self.file is not None and self.column is None:
            raise ValueError("file needs column, the CSV column to resample")
        if self.values is not None and (not self.values or min(self.values) < 1):
            raise ValueError("values must be a non-empty list of integers >= 1")
        return self


LengthSpec = Annotated[
    FixedLengths | UniformLengths | LognormalLengths | EmpiricalLengths,
    Field(discriminator="kind"),
]


class GeneratorSpec(_Spec):
    """Everything that determines a synthetic trace."""

    num_requests: int = Field(gt=0)
    arrival: ArrivalSpec
    prompt: LengthSpec
    output: LengthSpec
    seed: int = Field(default=0, ge=0, lt=2**64)


def lognormal_mu_for_mean(mean: float, sigma: float, low: float, high: float) -> float:
    """The log-mean mu whose lognormal, clipped to [low, high], has expectation ``mean``.

    E[clip(X, low, high)] for X ~ LogNormal(mu, sigma) is, with Phi the normal CDF,
    low·Phi(a) + e^(mu+sigma^2/2)·(Phi(b - sigma) - Phi(a - sigma)) + high·(1 - Phi(b)),
    where a = (ln low - mu)/sigma and b = (ln high - mu)/sigma. It rises with mu, so
    bisection finds the root.
    """

    def phi(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    def clipped_mean(mu: float) -> float:
        a = (math.log(low) - mu) / sigma
        b = (math.log(high) - mu) / sigma
        body = math.exp(mu + sigma**2 / 2) * (phi(b - sigma) - phi(a - sigma))
        return low * phi(a) + body + high * (1.0 - phi(b))

    lo, hi = math.log(low) - 10 * sigma, math.log(high) + 10 * sigma
    for _ in range(200):
        mid = (lo + hi) / 2
        if clipped_mean(mid) < mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _sample_lengths(spec: Any, count: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, FixedLengths):
        return np.full(count, spec.value, dtype=np.int64)
    if isinstance(spec, UniformLengths):
        return rng.integers(spec.low, spec.high + 1, size=count, dtype=np.int64)
    if isinstance(spec, LognormalLengths):
        # NOTE: the +0.5 offsets in mu's bounds account for rounding to integers.
        mu = lognormal_mu_for_mean(spec.mean, spec.sigma, spec.min, spec.max)
        draws = rng.lognormal(mu, spec.sigma, size=count)
        return np.clip(np.rint(draws), spec.min, spec.max).astype(np.int64)
    if isinstance(spec, EmpiricalLengths):
        values = np.asarray(spec.values if spec.values is not None else _read_column(spec))
        return rng.choice(values, size=count, replace=True).astype(np.int64)
    raise AssertionError(f"unhandled length spec {spec!r}")


def _read_column(spec: EmpiricalLengths) -> np.ndarray:
    import pandas as pd  # NOTE: lazily, so only a CSV of lengths pays its import

    path = Path(str(spec.file))
    if not path.is_file():
        raise ClusterSimError(f"empirical lengths: file {path} does not exist")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ClusterSimError(f"empirical lengths: {path} is not a readable CSV ({error})") \
            from None
    if spec.column not in frame.columns:
        raise ClusterSimError(f"empirical lengths: column {spec.column!r} not in {path}; found "
                              f"{', '.join(map(str, frame.columns))}")
    values = pd.to_numeric(frame[spec.column], errors="coerce").dropna()
    values = values[values >= 1]
    if values.empty:
        raise ClusterSimError(f"empirical lengths: column {spec.column!r} of {path} has no "
                              f"integer >= 1")
    result: np.ndarray = values.to_numpy(dtype=np.int64)
    return result


def _sample_arrivals(spec: Any, count: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, PoissonArrivals):
        gaps = rng.exponential(1.0 / spec.rate_per_s, size=count)
    else:
        shape = 1.0 / spec.cv**2
        gaps = rng.gamma(shape, 1.0 / (spec.rate_per_s * shape), size=count)
    gaps[0] = 0.0  # the trace starts with its first arrival
    return np.cumsum(gaps)


def generate(spec: GeneratorSpec) -> RequestTrace:
    """Draw a trace from ``spec``: arrivals, then prompt lengths, then output lengths."""
    rng = np.random.default_rng(spec.seed)
    arrival = _sample_arrivals(spec.arrival, spec.num_requests, rng)
    prompt = _sample_lengths(spec.prompt, spec.num_requests, rng)
    output = _sample_lengths(spec.output, spec.num_requests, rng)
    return RequestTrace.from_columns(
        arrival, prompt, output, metadata={"generator": spec.model_dump(mode="json")}
    )


_LENGTHS: TypeAdapter[Any] = TypeAdapter(LengthSpec)


def parse_distribution(text: str, what: str) -> Any:
    """Parse ``kind:key=value,...`` into a length spec.

    Args:
        text: e.g. ``"lognormal:mean=1155,sigma=0.5,max=8192"``.
        what: the option it came from, for error messages (e.g. ``"--prompt"``).

    Raises:
        ClusterSimError: malformed text or an invalid parameter.
    """
    kind, _, rest = text.partition(":")
    fields: dict[str, Any] = {"kind": kind.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ClusterSimError(f"{what} {text!r}: expected key=value, got {item!r}; e.g. "
                                  f"lognormal:mean=1155,sigma=0.5")
        fields[key.strip()] = value.strip()
    if fields["kind"] == "empirical" and "values" in fields:
        fields["values"] = fields["values"].split("|")
    try:
        return _LENGTHS.validate_python(fields)
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(error, f"{what} {text!r}")) from None


class ChatSpec(_Spec):
    """Shared system prompts and multi-turn sessions (prefix-caching workloads).

    ``num_system_prompts`` groups of ``users_per_prompt`` users. Requests arrive by
    ``arrival``; each goes to a user free to ask (its previous turn arrived at least
    ``think_time_s`` ago; if none is free, the first to become free, later). A turn's
    prompt is the group's system prompt, the conversation so far (earlier questions and
    outputs) and a new question; after ``turns_per_session`` turns the user starts a new
    conversation. Follow-up turns carry ``think_time_s``, so the simulator sends each one
    only after the previous turn's response is complete (closed loop); the arrival drawn
    here is its earliest time.
    """

    num_requests: int = Field(gt=0)
    arrival: ArrivalSpec
    num_system_prompts: int = Field(gt=0)
    users_per_prompt: int = Field(gt=0)
    system_prompt_tokens: int = Field(ge=0)
    question: LengthSpec
    output: LengthSpec
    turns_per_session: int = Field(default=1, gt=0)
    think_time_s: float = Field(default=0.0, ge=0)
    seed: int = Field(default=0, ge=0, lt=2**64)


def generate_chat(spec: ChatSpec) -> RequestTrace:
    """Draw a shared-prefix, multi-turn trace from ``spec`` (seeded)."""
    rng = np.random.default_rng(spec.seed)
    n = spec.num_requests
    arrivals = _sample_arrivals(spec.arrival, n, rng)
    questions = _sample_lengths(spec.question, n, rng)
    outputs = _sample_lengths(spec.output, n, rng)
    num_users = spec.num_system_prompts * spec.users_per_prompt
    free_at = np.zeros(num_users)  # when each user may ask again
    turn = np.zeros(num_users, dtype=np.int64)
    conversation = np.zeros(num_users, dtype=np.int64)
    history = np.zeros(num_users, dtype=np.int64)  # tokens of earlier turns in the session
    arrival_s: list[float] = []
    prompts: list[int] = []
    prefix_ids: list[str | None] = []
    prefix_lens: list[int | None] = []
    sessions: list[str] = []
    thinks: list[float | None] = []
    for i in range(n):
        now = max(float(arrivals[i]), arrival_s[-1] if arrival_s else 0.0)
        free = np.flatnonzero(free_at <= now)
        if free.size:
            user = int(free[rng.integers(free.size)])
        else:  # everyone is thinking: the first user to finish asks, later
            user = int(np.argmin(free_at))
            now = float(free_at[user])
        if turn[user] == spec.turns_per_session:
            turn[user], history[user] = 0, 0
            conversation[user] += 1
        group = user // spec.users_per_prompt
        system = spec.system_prompt_tokens
        prompts.append(system + int(history[user]) + int(questions[i]))
        prefix_ids.append(f"system-{group}" if system else None)
        prefix_lens.append(system if system else None)
        sessions.append(f"user-{user}-conversation-{conversation[user]}")
        thinks.append(spec.think_time_s if turn[user] else None)
        arrival_s.append(now)
        history[user] += int(questions[i]) + int(outputs[i])
        turn[user] += 1
        free_at[user] = now + spec.think_time_s
    return RequestTrace.from_columns(
        arrival_s, prompts, outputs,
        extras={"prefix_id": prefix_ids, "prefix_tokens": prefix_lens, "session_id": sessions,
                "think_time_s": thinks},
        metadata={"generator": spec.model_dump(mode="json") | {"kind": "chat"}},
    )

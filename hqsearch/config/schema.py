"""The study schema: one YAML file describes data, model, search space, synthesis and execution.

Every section forbids unknown keys, so a typo is an error instead of a silently ignored setting.
`load_config` turns pydantic's errors into one `ConfigError` that names the file, the key and the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from hqsearch.config.metrics import BACKENDS, HLS, Direction, not_produced, selectable
from hqsearch.exceptions import ConfigError
from hqsearch.keras_backend import KerasBackend

_DIRECTIONS = {"max": Direction.MAXIMIZE, "min": Direction.MINIMIZE, **{d.value: d for d in Direction}}
_CONSTRAINT_RE = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# a metric an objective or constraint may name (hqsearch.config.metrics); an error points at the key itself
MetricName = Annotated[str, AfterValidator(lambda name: selectable(name).name)]


class Constraint(_Section):
    """`metric <= bound` or `metric >= bound`; Optuna calls a trial feasible when `value()` <= 0."""

    metric: MetricName
    op: Literal["<=", ">="]
    bound: float

    @property
    def key(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def value(self, metrics: dict[str, float]) -> float:
        x = metrics[self.metric]
        return x - self.bound if self.op == "<=" else self.bound - x


class StudySection(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    storage: str | None = None  # any Optuna storage URL; default sqlite under output_dir
    output_dir: Path | None = None  # default runs/<name>
    artifact_dir: Path | None = None  # default <output_dir>/artifacts
    n_trials: int | None = Field(default=None, ge=1)  # trainings; 20 when neither this nor budget is set
    budget: int | None = Field(default=None, ge=1)  # training epochs, all trainings together
    seed: int | None = 0
    sampler: Literal["tpe", "nsga2", "random", "gp"] = "tpe"
    # validate_default: the default goes through the same normalisation as a user's objectives
    objectives: dict[MetricName, Direction] = Field(
        default_factory=lambda: {"accuracy": "max", "luts": "min"}, validate_default=True
    )
    constraints: list[Constraint] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _some_limit(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("n_trials") is None and v.get("budget") is None:
            return {**v, "n_trials": 20}
        return v

    @field_validator("objectives", mode="before")
    @classmethod
    def _directions(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        if not v:
            raise ValueError("at least one objective is needed, e.g. {accuracy: max, luts: min}")
        out = {}
        for metric, direction in v.items():
            if str(direction).lower() not in _DIRECTIONS:
                raise ValueError(f"direction of {metric!r} must be max or min, not {direction!r}")
            out[metric] = _DIRECTIONS[str(direction).lower()]
        return out

    @field_validator("sampler")
    @classmethod
    def _sampler_installed(cls, v: str) -> str:
        import importlib.util

        if v == "gp" and importlib.util.find_spec("torch") is None:
            raise ValueError(
                "sampler 'gp' is Optuna's GPSampler, which needs PyTorch: pip install 'hqsearch[gp]' "
                "(or choose tpe, nsga2 or random)"
            )
        return v

    @field_validator("constraints", mode="before")
    @classmethod
    def _parse_constraints(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                m = _CONSTRAINT_RE.match(item)
                if not m:
                    raise ValueError(f"constraint {item!r} must look like 'luts <= 20000' or 'accuracy >= 0.9'")
                item = {"metric": m[1], "op": m[2], "bound": float(m[3])}
            out.append(item)
        return out

    @property
    def directions(self) -> list[Direction]:
        return list(self.objectives.values())

    @property
    def maximise(self) -> list[bool]:
        """Which objectives are maximised, in config order (Optuna's `directions` order)."""
        return [d == Direction.MAXIMIZE for d in self.objectives.values()]

    @property
    def metric_names(self) -> list[str]:
        return list(self.objectives)

    def values(self, metrics: dict[str, float]) -> list[float]:
        """The objective values of a point, in config order."""
        return [metrics[m] for m in self.objectives]

    def constraint_values(self, metrics: dict[str, float]) -> dict[str, float]:
        """Each constraint's value for a point, by key: feasible where every value is <= 0."""
        return {c.key: c.value(metrics) for c in self.constraints}

    @property
    def needed_metrics(self) -> list[str]:
        """What a point must report to be told COMPLETE: its objectives and constrained metrics."""
        return list(dict.fromkeys([*self.objectives, *(c.metric for c in self.constraints)]))

    @property
    def run_dir(self) -> Path:
        return self.output_dir or Path("runs") / self.name

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.run_dir / 'study.db'}"

    @property
    def artifact_path(self) -> Path:
        return self.artifact_dir or self.run_dir / "artifacts"


class DataSection(_Section):
    source: Literal["digits", "jet_hlf", "npz", "csv", "parquet", "callable"] = "digits"
    path: Path | None = None  # npz/csv/parquet file; for jet_hlf a local copy of OpenML 42468
    features: list[str] | str | None = None  # csv/parquet columns (default: all but label); npz array key
    label: str | None = None  # csv/parquet label column; npz array key
    function: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # module:function
    cache_dir: Path | None = None  # jet_hlf download cache
    image_shape: list[int] | None = None  # reshape flat features for the conv model, e.g. [8, 8, 1]
    val_fraction: float = Field(default=0.1, lt=1)  # > 0: objectives are measured on the validation split
    test_fraction: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 0
    standardize: bool = False

    @field_validator("val_fraction")
    @classmethod
    def _validation_split(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(
                f"must be more than 0, got {v:g}: the accuracy objective and the front are chosen on the "
                "validation split (the test split is only reported)"
            )
        return v

    @model_validator(mode="after")
    def _needs(self) -> DataSection:
        if self.source in ("npz", "csv", "parquet") and self.path is None:
            raise ValueError(f"source {self.source!r} needs 'path' to the data file")
        if self.source in ("csv", "parquet") and not self.label:
            raise ValueError(f"source {self.source!r} needs 'label', the name of the label column")
        if self.source == "callable" and not self.function:
            raise ValueError("source 'callable' needs 'function' as 'module:function'")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class ModelSection(_Section):
    kind: Literal["mlp", "conv", "callable"] = "mlp"
    widths: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [32, 16])  # hidden dense layers
    activation: Literal["relu", "tanh", "sigmoid", "linear"] = "relu"
    filters: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [4, 8])  # conv layers
    kernel_size: int = Field(default=3, ge=1)
    pool_size: int = Field(default=2, ge=1)
    function: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

    @model_validator(mode="after")
    def _needs(self) -> ModelSection:
        if self.kind == "callable" and not self.function:
            raise ValueError("kind 'callable' needs 'function' as 'module:function'")
        return self


class HarvestSection(_Section):
    """Candidates a training adds to the study besides its final model: epochs on its in-run front."""

    max_candidates: int = Field(default=6, ge=0)  # 0: only the final model is a point of the study


class ContinuationSection(_Section):
    """When a training continues a stored checkpoint (a point of the study) instead of starting fresh."""

    share: float = Field(default=0.75, ge=0, le=1)  # of the trainings after `startup`; 0: always fresh
    # fresh trainings first, so there is a front to continue from: the opening ramps (`search_space.ramp.opening`)
    startup: int = Field(default=2, ge=1)
    adapt: bool = True  # `share` moves toward the kind of training that adds more hypervolume per epoch


class StoppingSection(_Section):
    """When a training ends before its last epoch because it can no longer reach the study's front."""

    # further below the front than any training of its kind closed afterwards; off: the benchmark found
    # no gain from it (README, Search quality)
    behind_front: bool = False
    learn_from: int = Field(default=3, ge=1)  # finished trainings of that kind the margin needs, per share of epochs


class TrainingSection(_Section):
    epochs: int = Field(default=40, ge=1)  # the middle of the lengths searched (search_space.epochs)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=3e-3, gt=0)
    beta_schedule: Literal["constant", "ramp", "pid"] = "ramp"  # the benchmark's choice: see README, Search quality
    target_ebops: float | None = Field(default=None, gt=0)  # for pid
    pid_warmup: int = Field(default=5, ge=0)
    harvest: HarvestSection = HarvestSection()
    continuation: ContinuationSection = ContinuationSection()
    stopping: StoppingSection = StoppingSection()

    @model_validator(mode="after")
    def _needs(self) -> TrainingSection:
        if self.beta_schedule == "pid" and self.target_ebops is None:
            raise ValueError("beta_schedule 'pid' needs 'target_ebops'")
        return self


class FloatRange(_Section):
    low: float
    high: float
    log: bool = False
    allow_zero: bool = False  # add 0 as an extra choice next to the range

    @model_validator(mode="after")
    def _order(self) -> FloatRange:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low:g}) must not exceed high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g} (use allow_zero: true to add 0)")
        return self


class IntRange(_Section):
    low: int
    high: int

    @model_validator(mode="after")
    def _order(self) -> IntRange:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


WeightMode = Literal["intra", "inter", "per_channel"]
ActivationMode = Literal["intra", "inter"]


class HeterogeneitySpace(_Section):
    weights: list[WeightMode] = Field(default_factory=lambda: ["intra"], min_length=1)
    activations: list[ActivationMode] = Field(default_factory=lambda: ["intra"], min_length=1)

    @field_validator("weights", "activations", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


Fraction = Annotated[float, Field(ge=0, le=1)]


class FractionRange(FloatRange):
    @model_validator(mode="after")
    def _unit(self) -> FractionRange:
        if self.low < 0 or self.high > 1:
            raise ValueError(f"a fraction range lies within [0, 1], got [{self.low:g}, {self.high:g}]")
        return self


class RampSpace(_Section):
    """The shape of a training's beta ramp: held at its start, then a log ramp to the trial's beta at the
    last epoch. `start` is where it begins, as the fraction of the way from `beta.low` to the trial's beta
    on the log scale (0: the whole range, the HGQ authors' ramp; 1: beta constant); `hold` is the
    fraction of the epochs spent at the start. A continuation starts at its checkpoint's beta instead."""

    # the benchmark's shape (README, Search quality): every start, and a hold of up to a quarter
    start: FractionRange | Fraction = FractionRange(low=0.0, high=1.0)
    hold: FractionRange | Fraction = FractionRange(low=0.0, high=0.25)
    # the study's first trainings ramp over the whole range at the longest length (`space.opening_ramp`)
    opening: int = Field(default=2, ge=0)


HLS4ML_SETTINGS = ("strategy", "reuse_factor", "io_type")  # synthesis fields the search space may search
Strategy = Literal["latency", "resource", "distributed_arithmetic"]
IOType = Literal["io_parallel", "io_stream"]


class HLS4MLSpace(_Section):
    """hls4ml's own settings as search dimensions, for the backends vivado and vitis: a list gives the
    choices and overrides the `synthesis` section's value, unset keeps it. HGQ's rules shape the space
    (see `space.suggest`): inter-layer-only heterogeneity gets the resource strategy, every other mode
    latency or distributed_arithmetic; distributed_arithmetic runs at reuse factor 1; io_stream needs
    inter-layer activations."""

    strategy: list[Strategy] | None = Field(default=None, min_length=1)
    reuse_factor: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1)
    io_type: list[IOType] | None = Field(default=None, min_length=1)

    @field_validator("strategy", "reuse_factor", "io_type", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | int) else v

    @property
    def searched(self) -> list[str]:
        """The settings given more than one choice."""
        return [k for k in HLS4ML_SETTINGS if len(set(getattr(self, k) or ())) > 1]


class SearchSpace(_Section):
    beta: FloatRange | Annotated[float, Field(ge=0)] = FloatRange(low=1e-7, high=1e-4, log=True)  # ramps' end
    # a training's length; unset: half to twice training.epochs (see StudyConfig); null: training.epochs
    epochs: IntRange | Annotated[int, Field(ge=1)] | None = None
    ramp: RampSpace = RampSpace()
    l1: FloatRange | Annotated[float, Field(ge=0)] = 0.0
    l2: FloatRange | Annotated[float, Field(ge=0)] = 0.0
    heterogeneity: HeterogeneitySpace = HeterogeneitySpace()
    learning_rate: FloatRange | None = None
    init_weight_bits: IntRange | Annotated[int, Field(ge=1)] | None = None
    init_act_bits: IntRange | Annotated[int, Field(ge=0)] | None = None
    widths: list[list[Annotated[int, Field(ge=1)]]] | None = None  # choices of hidden widths
    hls4ml: HLS4MLSpace = HLS4MLSpace()  # strategy, reuse_factor, io_type searched (vivado, vitis)
    zero_beta_for_inter_resource: bool = True  # HGQ rule 5: inter-only + resource strategy => beta = 0

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, v: IntRange | int | None) -> IntRange | int | None:
        if isinstance(v, IntRange) and v.low < 1:
            raise ValueError("epochs range needs low >= 1")
        return v

    @field_validator("learning_rate")
    @classmethod
    def _lr(cls, v: FloatRange | None) -> FloatRange | None:
        if v is not None and v.low <= 0:
            raise ValueError("learning_rate range needs low > 0")
        return v

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[list[int]] | None) -> list[list[int]] | None:
        if v is not None and not v:
            raise ValueError("widths needs at least one choice, e.g. [[32, 16], [64, 32]]")
        return v


Backend = Literal[BACKENDS]
PragmaFixup = Literal["dataflow_to_pipeline", "remove_dataflow", "inline_recursive"]


class SynthesisSection(_Section):
    backend: Backend = "estimate"
    part: str = "xcvu13p-flga2577-2-e"
    clock_period: float = Field(default=5.0, gt=0)  # ns
    latency_cutoff: float = 5.0  # alkaid pipeline cut in its delay units; <= 0: combinational
    hard_dc: int = Field(default=2, ge=-1)  # alkaid solver delay constraint
    io_type: IOType = "io_parallel"
    strategy: Strategy = "latency"
    reuse_factor: int = Field(default=1, ge=1)
    yosys: Literal["auto", "native", "yowasp"] = "auto"  # auto: native yosys on PATH, else yowasp
    vsynth: bool = True  # vivado/vitis: run Vivado logic synthesis after HLS for post-synthesis numbers
    pragma_fixups: list[PragmaFixup] = Field(default_factory=list)  # applied to hls4ml projects before the build
    cache: bool = True  # content-addressed design cache: an identical design is never synthesised twice
    cache_dir: Path | None = None  # default runs/design_cache, shared by every study run from here
    keep_build: bool = False  # keep full build folders (RTL, HLS projects) in the artifact store
    verify_rtl: bool = False  # simulate the written RTL with Verilator when it is installed
    # front: the backend measures only designs whose predicted numbers could reach the measured front
    # (see hqsearch/fidelity.py); all: every design. No effect with the estimate backend.
    fidelity: Literal["all", "front"] = "front"
    fidelity_margin: float = Field(default=3.0, gt=0)  # prediction interval coverage, in normal standard deviations
    fidelity_after: int = Field(default=4, ge=3)  # designs measured at once, while the lines are being learned

    @model_validator(mode="after")
    def _fixups(self) -> SynthesisSection:
        if {"dataflow_to_pipeline", "remove_dataflow"} <= set(self.pragma_fixups):
            raise ValueError("pragma_fixups: choose one of dataflow_to_pipeline and remove_dataflow")
        return self

    @property
    def design_cache_dir(self) -> Path:
        return self.cache_dir or Path("runs") / "design_cache"


class Timeouts(_Section):
    """Seconds per stage; the stage's process is killed and the trial is a FAIL when one runs over. `synth`
    is per design: a harvested candidate over it is dropped alone (see `trial.synth_stage`)."""

    train: float | None = Field(default=3600, gt=0)
    firmware: float | None = Field(default=1800, gt=0)
    synth: float | None = Field(default=3600, gt=0)


class RayStage(_Section):
    """Ray resources one stage's task asks for; `resources` routes it, e.g. {vivado: 1}."""

    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)


class RaySection(_Section):
    address: str = ""  # "" starts a local Ray instance; "auto" or "ray://host:port" joins a cluster
    num_cpus: int | None = Field(default=None, ge=1)  # CPUs of a local instance (default: all)
    train: RayStage = RayStage(num_cpus=1)
    synth: RayStage = RayStage(num_cpus=1)
    max_retries: int = Field(default=1, ge=0)  # re-runs of a stage whose worker or node died
    # seconds the preflight waits for a node that has a stage's resources (nodes may still be joining)
    resource_wait: float = Field(default=60, gt=0)
    transfer: Literal["object_store", "shared_fs"] = "object_store"  # how a trial's files travel between nodes


class ExecutionSection(_Section):
    executor: Literal["local", "ray"] = "local"
    max_concurrent: int = Field(default=1, ge=1)
    timeouts: Timeouts = Timeouts()
    max_failures: int = Field(default=10, ge=1)  # a run stops after this many failed trials
    heartbeat: float = Field(default=10, gt=0)  # seconds between a driver's heartbeats on its running trials
    stale_after: float = Field(default=120, gt=0)  # a RUNNING trial without heartbeat this long is orphaned
    ray: RaySection = RaySection()
    # the Keras backend every stage runs on (see hqsearch/keras_backend.py): jax trains several times faster
    keras_backend: KerasBackend = "jax"
    compile_cache_dir: Path | None = None  # jax: XLA's compiled programs; default runs/compile_cache, per machine

    @property
    def compile_cache(self) -> Path:
        return self.compile_cache_dir or Path("runs") / "compile_cache"

    @model_validator(mode="after")
    def _beats(self) -> ExecutionSection:
        if self.stale_after <= 2 * self.heartbeat:
            raise ValueError("stale_after must be more than twice the heartbeat interval")
        return self


class HypervolumeSpec(_Section):
    """How a front is scored. `reference` names the metrics (objectives) the hypervolume spans and the
    point it is measured from; an objective left out of a non-empty `reference` is not part of it."""

    reference: dict[MetricName, float] = Field(default_factory=dict)  # unset: every objective, see below
    log_scale: list[MetricName] | None = None  # unset: the resource counts (luts, ffs, dsps, brams, ebops)


class ReportSection(_Section):
    hypervolume: HypervolumeSpec = HypervolumeSpec()


class StudyConfig(_Section):
    study: StudySection
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    search_space: SearchSpace = SearchSpace()
    synthesis: SynthesisSection = SynthesisSection()
    execution: ExecutionSection = ExecutionSection()
    report: ReportSection = ReportSection()

    _source: Path | None = PrivateAttr(default=None)  # the YAML file, for errors found after loading
    _raw: Any = PrivateAttr(default=None)  # the YAML as read, with the line of every key

    @model_validator(mode="before")
    @classmethod
    def _epochs_around_training(cls, raw: Any) -> Any:
        """A search space that leaves `epochs` unset searches half to twice `training.epochs`: trainings of
        several lengths, as the benchmark's default (README, Search quality). `null` or a number fixes it."""
        if not isinstance(raw, dict):
            return raw
        training, space = raw.get("training") or {}, raw.get("search_space") or {}
        if not isinstance(training, dict) or not isinstance(space, dict) or "epochs" in space:
            return raw
        epochs = training.get("epochs", TrainingSection.model_fields["epochs"].default)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            return raw  # the field's own check names the error
        return {**raw, "search_space": {**space, "epochs": {"low": max(1, epochs // 2), "high": 2 * epochs}}}

    def error(self, key: str, message: str) -> ConfigError:
        """A `ConfigError` that points at `key` (dotted) in the file this config came from."""
        source = self._source or Path("<config>")
        loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        line = _line_of(self._raw, loc) if self._raw is not None else None
        return ConfigError(f"{source}:{line}: {key}: {message}" if line else f"{source}: {key}: {message}")

    def with_synthesis(self, **settings: Any) -> StudyConfig:
        """A copy whose synthesis section has these fields replaced: a trial's own hls4ml settings."""
        if not settings:
            return self
        copy = self.model_copy(update={"synthesis": self.synthesis.model_copy(update=settings)})
        copy._source, copy._raw = self._source, self._raw
        return copy

    def with_overrides(self, **study: Any) -> StudyConfig:
        """A copy with study-level fields replaced (CLI `--n-trials`, `--storage`)."""
        set_ = {k: v for k, v in study.items() if v is not None}
        if not set_:
            return self
        copy = self.model_copy(update={"study": self.study.model_copy(update=set_)})
        copy._source, copy._raw = self._source, self._raw
        return copy


class _LineLoader(yaml.SafeLoader):
    """Keeps the line of every mapping key so errors can point into the file."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    # merge keys (`<<: *defaults`) first, as SafeLoader does: the merged keys become keys of this mapping
    # (its own keys win), each at the line where its value is written
    loader.flatten_mapping(node)
    lines = {}
    for key_node, _ in node.value:
        lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_lines(v) for k, v in obj.items() if k != "__lines__"}
    if isinstance(obj, list):
        return [_strip_lines(v) for v in obj]
    return obj


def _line_of(raw: Any, loc: tuple) -> int | None:
    line = None
    node = raw
    for part in loc:
        if isinstance(node, dict):
            line = node.get("__lines__", {}).get(part, line)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    return line


def _format_error(path: Path, raw: Any, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        if _other_union_branch(e):
            continue
        loc = tuple(p for p in e["loc"] if _is_key(p))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(raw, loc)
        where = f"{path}:{line}" if line else str(path)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}: {key}: {msg}")
    # a union reports every branch; keep each message once
    return "\n".join(dict.fromkeys(lines))


_TYPE_NAMES = {"float", "int", "str", "bool", "list", "dict", "constrained-float", "constrained-int"}
_SCALAR_ERRORS = {"float_type", "float_parsing", "int_type", "int_parsing", "string_type", "bool_type"}
_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type"}


def _is_key(part: str | int) -> bool:
    """pydantic puts union branch names ("FloatRange", "float", "function-after[...]") into loc; keys they are not."""
    if isinstance(part, int):
        return True
    return not (part[:1].isupper() or part in _TYPE_NAMES or "[" in part)


def _other_union_branch(e: dict) -> bool:
    """A `float | FloatRange` field reports both branches; keep the one the user evidently meant."""
    given_mapping = isinstance(e.get("input"), dict | list)
    return (e["type"] in _SCALAR_ERRORS and given_mapping) or (e["type"] in _MAPPING_ERRORS and not given_mapping)


def _backend_errors(cfg: StudyConfig) -> list[tuple[str, str]]:
    """Objectives and constraints the configured backend never reports: (key, why) for each."""
    backend = cfg.synthesis.backend
    errors = [(f"study.objectives.{m}", why) for m in cfg.study.objectives if (why := not_produced(m, backend))]
    for i, c in enumerate(cfg.study.constraints):
        if why := not_produced(c.metric, backend):
            errors.append((f"study.constraints.{i}", why))
    errors += _hls4ml_space_errors(cfg)
    for m in cfg.report.hypervolume.reference:
        if m not in cfg.study.objectives:
            errors.append(
                (
                    f"report.hypervolume.reference.{m}",
                    f"not an objective (objectives: {', '.join(cfg.study.objectives)})",
                )
            )
    return errors


def hls4ml_choices(cfg: StudyConfig) -> dict[str, list]:
    """Each hls4ml setting's choices: the search space's where given, else the synthesis section's value."""
    space, syn = cfg.search_space.hls4ml, cfg.synthesis
    return {k: list(dict.fromkeys(getattr(space, k) or [getattr(syn, k)])) for k in HLS4ML_SETTINGS}


def _hls4ml_space_errors(cfg: StudyConfig) -> list[tuple[str, str]]:
    """Searched hls4ml settings that cannot work: with a backend without hls4ml, or a strategy choice HGQ's
    rule 5 never lets a trial take (or a heterogeneity mode it leaves without a strategy)."""
    space, key = cfg.search_space.hls4ml, "search_space.hls4ml"
    given = [k for k in HLS4ML_SETTINGS if getattr(space, k) is not None]
    if not given:
        return []
    if cfg.synthesis.backend not in HLS:
        why = f"hls4ml settings are searched only for the backends vivado and vitis, not {cfg.synthesis.backend!r}"
        return [(key, why)]
    errors = []
    het = cfg.search_space.heterogeneity
    strategies = space.strategy or [cfg.synthesis.strategy]
    if "reuse_factor" in space.searched and set(strategies) == {"distributed_arithmetic"}:
        why = "distributed_arithmetic runs at reuse factor 1 in hls4ml: the other choices are never used"
        errors.append((f"{key}.reuse_factor", why))
    if "io_type" in space.searched and "inter" not in het.activations:
        why = "hls4ml streams (io_stream) only inter-layer activations, which search_space.heterogeneity does not allow"
        errors.append((f"{key}.io_type", why))
    if "strategy" in space.searched:
        inter_only = "inter" in het.weights and "inter" in het.activations
        others = len(het.weights) * len(het.activations) > 1 or not inter_only
        if inter_only and "resource" not in space.strategy:
            errors.append(
                (
                    f"{key}.strategy",
                    "inter-layer-only heterogeneity (weights and activations 'inter') goes with the resource strategy "
                    "(HGQ rule 5): add resource, or take 'inter' out of search_space.heterogeneity",
                )
            )
        if "resource" in space.strategy and not inter_only:
            errors.append(
                (
                    f"{key}.strategy",
                    "resource is the strategy of inter-layer-only heterogeneity (HGQ rule 5), which "
                    "search_space.heterogeneity does not allow: add 'inter' to weights and activations, "
                    "or drop resource",
                )
            )
        if not others and set(space.strategy) != {"resource"}:
            errors.append(
                (
                    f"{key}.strategy",
                    "every trial is inter-layer-only, which takes the resource strategy (HGQ rule 5): "
                    "the other choices are never used",
                )
            )
    return errors


def parse_config(raw: Any, source: Path | str = "<config>") -> StudyConfig:
    path = Path(source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'study' section at the top")
    try:
        cfg = StudyConfig.model_validate(_strip_lines(raw))
    except ValidationError as err:
        raise ConfigError(_format_error(path, raw, err)) from None
    cfg._source, cfg._raw = path, raw
    if errors := _backend_errors(cfg):
        raise ConfigError("\n".join(str(cfg.error(key, why)) for key, why in errors))
    return cfg


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the study config ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not a YAML study config (a binary file; for a storage, use --storage URL --study NAME)"
        ) from None
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    return parse_config(raw, path)

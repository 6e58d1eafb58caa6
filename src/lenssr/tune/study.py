"""Bayesian hyperparameter search with Optuna over short runs of the real trainers.

A tune YAML (``configs/tune-*.yaml``, see ``docs/tuning.md``) names a ``stage``
(``supervised``, ``pretrain`` or ``gan``), a ``base`` training config, fixed overrides
(``set:``, kept in ``best.yaml``), per-trial budget overrides (``trial:``, not kept), the
``objective`` (a validation metric and its direction), the ``sampler`` and ``pruner``, and the
search space (:mod:`lenssr.tune.space`).

Each trial builds a full training config, runs the stage's trainer for the trial budget and
reports the objective at every validation to Optuna, which prunes unpromising trials. A
``pretrain`` trial reports twice over: during pretraining its denoising validation loss
(:data:`PRETRAIN_METRIC`, in the objective's direction: negated when maximising), then the
objective of its fine-tuning run at steps after the pretraining's, so a trial whose pretraining
goes badly is pruned before it is fine-tuned. Studies
live in an Optuna RDB storage (SQLite, PostgreSQL, MySQL): a re-run with the same ``--study``
continues to the ``--trials`` target of COMPLETE + PRUNED trials, trials left RUNNING by a dead
process are failed by the heartbeat check and retried, and several workers can share one study.
"""

from __future__ import annotations

import copy
import csv
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lenssr.errors import ConfigError, LenssrError
from lenssr.tune.space import ConstraintViolation, SearchSpace, apply_values, flatten

STAGES = ("supervised", "pretrain", "gan")
#: The training task (:data:`lenssr.training.engine.TASKS`) each stage runs.
STAGE_TASKS = {"supervised": "supervised", "pretrain": "denoise", "gan": "gan"}
#: What a pretraining validation reports to the pruner (lower is better).
PRETRAIN_METRIC = "pretrain_val_loss"
_TOP_KEYS = {
    "stage",
    "base",
    "set",
    "trial",
    "finetune",
    "objective",
    "sampler",
    "pruner",
    "space",
    "derived",
    "constraints",
}
_FINISHED = ("COMPLETE", "PRUNED")


class TargetReached(Exception):  # noqa: N818 - a control-flow signal
    """Other workers already run or finished the ``--trials`` target (this trial is not run)."""


@dataclass
class TuneConfig:
    """A parsed tune YAML. ``base`` is the raw base training config (``defaults:`` merged)."""

    path: Path
    stage: str
    base: dict[str, Any]
    base_path: Path
    fixed: dict[str, Any]
    trial: dict[str, Any]
    finetune: dict[str, Any]
    metric: str
    direction: str
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    space: SearchSpace
    raw: dict[str, Any] = field(default_factory=dict)

    def best_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """Base + ``set:`` + ``params``: the full-length config a trial's parameters stand for.

        For ``stage: gan`` with ``init`` set, ``model`` keeps only its name: the generator's
        architecture comes from the checkpoint.
        """
        cfg = apply_values(apply_values(self.base, self.fixed, auxiliary=False), params)
        if self.stage == "gan" and cfg.get("init") and isinstance(cfg.get("model"), dict):
            cfg["model"] = {"name": cfg["model"].get("name", "hybrid")}
        return cfg

    def trial_config(self, params: dict[str, Any], out: Path) -> dict[str, Any]:
        """:meth:`best_config` with the per-trial budget and the trial's output directory."""
        cfg = apply_values(self.best_config(params), self.trial)
        cfg.setdefault("checkpoint", {})["dir"] = str(out)
        return cfg


def _dotted_map(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of dotted config keys to values")
    return flatten_leaves(value)


def flatten_leaves(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c.d": 2} -> {"a.b": 1, "c.d": 2}`` (leaves only)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_leaves(value, f"{name}."))
        else:
            out[name] = value
    return out


def validate_stage_config(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """Validate a training config with the stage's own validator; returns the full config."""
    from lenssr.training.engine import TASKS

    return TASKS.get(STAGE_TASKS[stage]).validate_config(config)


def load_tune_config(path: str | Path) -> TuneConfig:
    """Read and check a tune YAML; the ``base`` path is relative to the YAML file."""
    from lenssr.config import load_yaml, read_yaml_file

    path = Path(path)
    raw = read_yaml_file(path)
    bad = sorted(set(raw) - _TOP_KEYS)
    if bad:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(bad)} (known: {sorted(_TOP_KEYS)})")
    stage = raw.get("stage", "supervised")
    if stage not in STAGES:
        raise ConfigError(f"{path}: stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if not raw.get("base"):
        raise ConfigError(f"{path}: base (the training config to tune, e.g. hybrid.yaml) missing")
    base_path = path.parent / str(raw["base"])
    base = load_yaml(base_path)
    objective = raw.get("objective") or {}
    metric = objective.get("metric", "val_psnr")
    direction = objective.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"{path}: objective.direction must be maximize or minimize")
    sampler = {"type": "tpe", **(raw.get("sampler") or {})}
    if sampler["type"] not in ("tpe", "gp", "random"):
        raise ConfigError(f"{path}: sampler.type must be tpe, gp or random")
    pruner = {"type": "median", **(raw.get("pruner") or {})}
    if pruner["type"] not in ("median", "hyperband", "none"):
        raise ConfigError(f"{path}: pruner.type must be median, hyperband or none")
    finetune = _dotted_map(raw.get("finetune"), "finetune")
    if finetune and stage != "pretrain":
        raise ConfigError(f"{path}: finetune: is only used by stage: pretrain")
    cfg = TuneConfig(
        path=path,
        stage=stage,
        base=base,
        base_path=base_path,
        fixed=_dotted_map(raw.get("set"), "set"),
        trial=_dotted_map(raw.get("trial"), "trial"),
        finetune=finetune,
        metric=str(metric),
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        space=SearchSpace.from_dict(raw.get("space"), raw.get("derived"), raw.get("constraints")),
        raw=raw,
    )
    validate_stage_config(stage, cfg.best_config({}))  # the base itself must be valid
    return cfg


def make_sampler(spec: dict[str, Any], seed: int | None = None) -> Any:
    """The Optuna sampler of a ``sampler:`` section (``seed`` overrides ``spec["seed"]``)."""
    import optuna

    seed = spec.get("seed") if seed is None else seed
    startup = int(spec.get("n_startup_trials", 10))
    if spec["type"] == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if spec["type"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: models joint structure and handles conditional (when:) parameters;
    # constant_liar: parallel workers do not all sample the same point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
        )


def make_pruner(spec: dict[str, Any], budget_steps: int | None) -> Any:
    """The Optuna pruner of a ``pruner:`` section (steps are training steps)."""
    import optuna

    if spec["type"] == "none":
        return optuna.pruners.NopPruner()
    if spec["type"] == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=int(spec.get("min_resource", 1)),
            max_resource=spec.get("max_resource") or budget_steps or "auto",
            reduction_factor=int(spec.get("reduction_factor", 3)),
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(spec.get("n_startup_trials", 5)),
        n_warmup_steps=int(spec.get("n_warmup_steps", 0)),
        n_min_trials=int(spec.get("n_min_trials", 1)),
    )


def make_storage(url: str | None, heartbeat_interval: int = 60, grace_period: int | None = None):
    """Optuna storage for ``url``: an RDB with heartbeat and retry of dead trials, or memory."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if url is None:
        return optuna.storages.InMemoryStorage()
    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        raise ConfigError(
            f"--storage {url!r}: use an SQLAlchemy URL, e.g. sqlite:///tune.db or "
            "postgresql+psycopg://user:pass@host/db"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine_kwargs = {"connect_args": {"timeout": 120}}  # several local workers wait for locks
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"--storage {url}: database driver missing ({exc.name}); install it, e.g. "
            "pip install 'psycopg[binary]' for PostgreSQL or pymysql for MySQL"
        ) from exc


def run_trial(
    tune: TuneConfig,
    params: dict[str, Any],
    out: Path,
    report: Callable[[int, dict[str, float]], None] | None = None,
    device: str | None = None,
) -> tuple[float, list[dict[str, float]]]:
    """Train one trial with ``params`` in ``out``; return (objective, validation history).

    ``report(step, metrics)`` is called after every validation and may raise to stop the run.
    For ``stage: pretrain`` it sees the pretraining validations first, as
    ``{PRETRAIN_METRIC: val_loss}`` at the pretraining steps, then the fine-tuning run's at
    steps counted on from the last pretraining step; ``history`` holds the fine-tuning
    validations (with their own steps), which give the objective. Raises
    :class:`LenssrError` for invalid configs.
    """
    cfg = tune.trial_config(params, out)
    history: list[dict[str, float]] = []
    offset = 0  # steps already reported (by the pretraining of a pretrain trial)

    def on_validation(step: int, metrics: dict[str, float]) -> None:
        history.append({"step": step, **metrics})
        if report is not None:
            report(offset + step, metrics)

    from lenssr.training import train
    from lenssr.training.engine import Engine

    if tune.stage == "pretrain":

        def on_pretrain_validation(step: int, metrics: dict[str, float]) -> None:
            if report is not None:
                report(step, {PRETRAIN_METRIC: metrics["val_loss"]})

        pre_cfg = validate_stage_config("pretrain", cfg)
        runner = Engine(
            "denoise", pre_cfg, out=out / "pretrain", device=device, quiet=True,
            on_validation=on_pretrain_validation,
        )  # fmt: skip
        weights = runner.run()
        offset = runner.step
        sup = copy.deepcopy(cfg)
        sup.pop("pretrain", None)
        sup = apply_values(sup, tune.finetune)
        sup["checkpoint"]["dir"] = str(out / "finetune")
        full = validate_stage_config("supervised", sup)
        train(full, init=weights, device=device, quiet=True, on_validation=on_validation)
    elif tune.stage == "gan":
        full = validate_stage_config("gan", cfg)
        Engine("gan", full, device=device, quiet=True, on_validation=on_validation).run()
    else:
        full = validate_stage_config("supervised", cfg)
        train(full, device=device, quiet=True, on_validation=on_validation)
    values = [h[tune.metric] for h in history if tune.metric in h]
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        raise LenssrError(f"the run recorded no finite {tune.metric!r} (is there validation data?)")
    best = max(values) if tune.direction == "maximize" else min(values)
    return best, history


def _count(study: Any, states: tuple[str, ...]) -> int:
    from optuna.trial import TrialState

    wanted = tuple(TrialState[s] for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


def fail_orphan_trials(study: Any, storage: Any) -> int:
    """Fail the RUNNING trials that never recorded a heartbeat and started more than the
    storage's grace period ago; returns how many.

    Optuna creates a trial (``study.ask``, where the sampler runs) before it starts the trial's
    heartbeat, so a worker stopped in between (Ctrl-C just after a trial finished) leaves a
    RUNNING trial without a heartbeat. ``optuna.storages.fail_stale_trials`` judges trials by
    their heartbeat only, so such a trial would stay RUNNING for ever and count as a live trial
    of another worker. A live worker's trial has a heartbeat within one interval of its start.
    """
    from datetime import datetime, timedelta

    from optuna.trial import TrialState

    interval = getattr(storage, "heartbeat_interval", None)
    if not interval:
        return 0
    grace = storage.grace_period or 2 * interval
    old = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.datetime_start is not None
        and datetime.now() - t.datetime_start > timedelta(seconds=grace)
    ]
    if not old:
        return 0
    try:  # Optuna keeps heartbeats in its own table (its ORM model, not a public API)
        from optuna.storages._rdb.models import TrialHeartbeatModel
        from sqlalchemy.orm import Session

        with Session(storage.engine) as session:
            beating = {tid for (tid,) in session.query(TrialHeartbeatModel.trial_id)}
    except (ImportError, AttributeError):
        return 0
    orphans = [t for t in old if t._trial_id not in beating]
    for t in orphans:
        storage.set_trial_user_attr(t._trial_id, "fail_reason", "its worker stopped before it ran")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(orphans)


@dataclass
class TuneResult:
    """What :func:`run_study` did: the study, the trials this worker ran, the output files."""

    study: Any
    ran: int
    files: dict[str, Path]


def pruning_report(trial: Any, tune: TuneConfig) -> Callable[[int, dict[str, float]], None]:
    """The ``report(step, metrics)`` of :func:`run_trial` for an Optuna ``trial``: reports the
    objective (or, for a pretraining validation, :data:`PRETRAIN_METRIC` in the objective's
    direction) and raises ``optuna.TrialPruned`` when the pruner says so."""
    import optuna

    def report(step: int, metrics: dict[str, float]) -> None:
        name, value = tune.metric, metrics.get(tune.metric)
        sign = 1.0
        if value is None and PRETRAIN_METRIC in metrics:  # a pretraining validation
            name, value = PRETRAIN_METRIC, metrics[PRETRAIN_METRIC]
            sign = -1.0 if tune.direction == "maximize" else 1.0
        if value is None or not math.isfinite(float(value)):
            return
        trial.report(sign * float(value), step)
        if trial.should_prune():
            reason = f"pruned at step {step} ({name} {float(value):.4g})"
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)

    return report


def trial_steps(tune: TuneConfig, out: Path) -> int | None:
    """Training steps one trial reports over (pretraining + fine-tuning for ``stage: pretrain``);
    ``None`` when a budget is in minutes only."""
    cfg = tune.trial_config({}, out)
    steps = (cfg.get("budget") or {}).get("steps")
    if tune.stage != "pretrain" or steps is None:
        return steps
    sup = apply_values({k: v for k, v in cfg.items() if k != "pretrain"}, tune.finetune)
    finetune = (sup.get("budget") or {}).get("steps")
    return None if finetune is None else int(steps) + int(finetune)


def run_study(
    tune: TuneConfig | str | Path,
    trials: int,
    storage: str | None = None,
    study_name: str = "lenssr",
    out: str | Path = "runs/tune",
    timeout_min: float | None = None,
    device: str | None = None,
    seed: int | None = None,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
    quiet: bool = False,
    console: Any = None,
) -> TuneResult:
    """Run (or continue, or join) a study until it holds ``trials`` COMPLETE + PRUNED trials.

    Each worker re-checks the shared count before every trial, so several processes or
    machines on one ``storage`` together reach the target. ``timeout_min`` stops starting new
    trials after that many minutes. Writes ``best.yaml``, ``trials.csv`` and the plots in
    ``out`` and returns a :class:`TuneResult`.
    """
    import optuna
    from optuna.trial import TrialState

    if not isinstance(tune, TuneConfig):
        tune = load_tune_config(tune)
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if console is None:
        from rich.console import Console

        console = Console(stderr=True, quiet=quiet)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from lenssr.training.data_prep import ensure_data

    ensure_data(tune.trial_config({}, out), progress=not quiet)
    budget = trial_steps(tune, out)
    rdb = make_storage(storage, heartbeat_interval, grace_period)
    study = optuna.create_study(
        study_name=study_name,
        storage=rdb,
        sampler=make_sampler(tune.sampler, seed),
        pruner=make_pruner(tune.pruner, budget),
        direction=tune.direction,
        load_if_exists=True,
    )
    flat_base = flatten(validate_stage_config(tune.stage, tune.best_config({})))

    def objective(trial: optuna.Trial) -> float:
        ahead = [
            t
            for t in study.get_trials(
                deepcopy=False,
                states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
            )
            if t.number < trial.number
        ]
        if len(ahead) >= trials:
            trial.set_user_attr("fail_reason", "target reached by other workers")
            raise TargetReached(f"{len(ahead)} trials ahead of #{trial.number}")
        try:
            params = tune.space.sample(trial, flat_base)
        except ConstraintViolation as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc
        trial_dir = out / "trials" / f"trial-{trial.number:04d}"
        try:
            value, history = run_trial(tune, params, trial_dir, pruning_report(trial, tune), device)
        except optuna.TrialPruned:
            raise
        except LenssrError as exc:  # invalid combination or diverged run: recorded, not fatal
            trial.set_user_attr("pruned_reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc
        trial.set_user_attr("history", history)
        trial.set_user_attr("dir", str(trial_dir))
        return value

    def announce(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if frozen.state == TrialState.FAIL and frozen.user_attrs.get("fail_reason"):
            return
        done = _count(study, _FINISHED)
        secs = (
            (frozen.datetime_complete - frozen.datetime_start).total_seconds()
            if frozen.datetime_complete and frozen.datetime_start
            else float("nan")
        )
        what = (
            f"{tune.metric} {frozen.value:.4g}"
            if frozen.value is not None
            else frozen.user_attrs.get("pruned_reason", "")
        )
        try:
            best = f"best {study.best_value:.4g} (#{study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        console.print(
            f"[{done}/{trials}] trial {frozen.number} {frozen.state.name} {what} "
            f"in {secs:.0f} s; {best}",
            highlight=False,
        )

    start = time.monotonic()
    ran = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        fail_orphan_trials(study, rdb)
        done = _count(study, _FINISHED)
        live = _count(study, ("RUNNING",))
        waiting = _count(study, ("WAITING",))
        if done >= trials:
            break
        if done + live >= trials and not waiting:
            break  # other workers are running the last trials
        if timeout_min is not None and time.monotonic() - start >= 60 * timeout_min:
            console.print(f"--timeout {timeout_min} min reached; stopping", highlight=False)
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, n_trials=1, catch=(TargetReached,), callbacks=[announce])
        ran += 1
    files = write_outputs(study, tune, out, console)
    return TuneResult(study=study, ran=ran, files=files)


def write_outputs(study: Any, tune: TuneConfig, out: Path, console: Any) -> dict[str, Path]:
    """Write ``best.yaml``, ``trials.csv``, ``history.png``, ``importances.png`` (when there
    are enough complete trials) into ``out`` and print the summary table; returns the paths."""
    from optuna.trial import TrialState

    files: dict[str, Path] = {}
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    csv_path = out / "trials.csv"
    names = sorted({k for t in trials for k in t.params})
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["number", "state", tune.metric, "seconds", "reason", *names])
        for t in trials:
            secs = (
                round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
                if t.datetime_complete and t.datetime_start
                else ""
            )
            reason = t.user_attrs.get("pruned_reason") or t.user_attrs.get("fail_reason") or ""
            value = "" if t.value is None else t.value
            row = [t.number, t.state.name, value, secs, reason]
            writer.writerow([*row, *(t.params.get(n, "") for n in names)])
    files["trials"] = csv_path
    best = study.best_trial if complete else None
    if best is not None:
        params = tune.space.sample(_FixedTrial(best.params), flatten(tune.best_config({})))
        cfg = validate_stage_config(tune.stage, tune.best_config(params))
        cfg["checkpoint"]["dir"] = str(out / "best-run")
        header = (
            f"# Best trial #{best.number} of study {study.study_name!r}: "
            f"{tune.metric} {best.value:.4f} (trial budget)\n"
            f"# Tuned from {tune.path} (base {tune.base_path}); full training budget.\n"
        )
        path = out / "best.yaml"
        path.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
        files["best"] = path
    files.update(_plots(study, out, complete))
    _summary(study, tune, console)
    return files


class _FixedTrial:
    """Replays stored parameters through :meth:`SearchSpace.sample` (derived values too)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def _get(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.params[name]

    suggest_categorical = suggest_int = suggest_float = _get


def _plots(study: Any, out: Path, complete: list[Any]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as ovm

    files: dict[str, Path] = {}
    if not complete:
        return files
    jobs = [("history", ovm.plot_optimization_history)]
    if len(complete) >= 2:
        jobs.append(("importances", ovm.plot_param_importances))
    for name, fn in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = fn(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # e.g. importances of parameters that never varied
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files[name] = path
    return files


def _summary(study: Any, tune: TuneConfig, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"study {study.study_name} ({tune.direction} {tune.metric})")
    for col in ("#", "state", tune.metric, "s", "note"):
        table.add_column(col)
    for t in study.get_trials(deepcopy=False):
        secs = (
            f"{(t.datetime_complete - t.datetime_start).total_seconds():.0f}"
            if t.datetime_complete and t.datetime_start
            else ""
        )
        note = t.user_attrs.get("pruned_reason") or t.user_attrs.get("fail_reason") or ""
        value = "" if t.value is None else f"{t.value:.4f}"
        table.add_row(str(t.number), t.state.name, value, secs, note[:60])
    console.print(table)
    try:
        best = study.best_trial
    except ValueError:
        console.print("no complete trial yet")
        return
    params = Table(title=f"best trial #{best.number}: {tune.metric} {best.value:.4f}")
    params.add_column("parameter")
    params.add_column("value")
    for key, value in best.params.items():
        params.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(params)

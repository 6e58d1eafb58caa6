"""lenssr tune: space parsing and constraints, the trainer's validation hook, pruning, resume
after a crash, two workers on one SQLite study, and best.yaml training as it is."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from lenssr.errors import ConfigError
from lenssr.training import load_config, train
from lenssr.training.engine import Engine, StopTraining
from lenssr.tune.space import SearchSpace, flatten
from lenssr.tune.study import (
    PRETRAIN_METRIC,
    TuneConfig,
    load_tune_config,
    pruning_report,
    run_study,
    run_trial,
    trial_steps,
)

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def base_config(data: Path, out: Path) -> dict:
    return {
        "model": {
            "name": "hybrid",
            "num_feat": 4,
            "num_res_blocks": 1,
            "embed_dim": 8,
            "depth": 1,
            "num_heads": 2,
            "pos_grid": 4,
            "num_levels": 1,
        },
        "data": {"train": str(data), "val_fraction": 0.25, "patch_size": 8, "batch_size": 4},
        "schedule": {"warmup_steps": 0},
        "val": {"every_steps": 2, "max_images": 4},
        "log": {"tensorboard": False},
        "checkpoint": {"dir": str(out / "base-run"), "keep_last": 0},
        "threads": 1,
        "device": "cpu",
        "budget": {"steps": 40},
    }


TUNE = {
    "stage": "supervised",
    "base": "base.yaml",
    "trial": {"budget.steps": 4, "schedule.total_steps": 4},
    "objective": {"metric": "val_psnr", "direction": "maximize"},
    "sampler": {"type": "tpe", "n_startup_trials": 2, "seed": 0},
    "pruner": {"type": "median", "n_startup_trials": 1},
    "space": {
        "model.num_heads": {"type": "categorical", "choices": [1, 2, 4]},
        "head_dim": {"type": "categorical", "choices": [2, 4]},
        "model.shallow_kernel": {"type": "categorical", "choices": [3, 5]},
        "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
    },
    "derived": {"model.embed_dim": "model.num_heads * head_dim"},
    "constraints": ["model.embed_dim % model.num_heads == 0"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_pairs) -> Path:
    """16 one-blob pairs, LR 8x8 -> HR 16x16."""
    return make_pairs(tmp_path_factory.mktemp("tune-data") / "pairs.h5", n=16, h=8, blobs=1)


def write_tune(tmp: Path, data: Path, **changes: object) -> Path:
    (tmp / "base.yaml").write_text(yaml.safe_dump(base_config(data, tmp)))
    path = tmp / "tune.yaml"
    path.write_text(yaml.safe_dump({**TUNE, **changes}))
    return path


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(states=states)


# ------------------------------------------------------------------------------ the space
def test_space_derived_values_respect_heads() -> None:
    space = SearchSpace.from_dict(
        TUNE["space"], TUNE["derived"], ["model.embed_dim % model.num_heads == 0"]
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(60):
        values = space.sample(study.ask(), {})
        assert values["model.embed_dim"] % values["model.num_heads"] == 0
        assert values["model.embed_dim"] == values["model.num_heads"] * values["head_dim"]
        assert 1e-4 <= values["optim.lr"] <= 1e-3
        seen.add(values["model.num_heads"])
    assert seen == {1, 2, 4}


def test_constraints_prune_invalid_combinations_with_a_reason(tmp_path: Path, data: Path) -> None:
    space = {
        "model.num_heads": {"type": "categorical", "choices": [2, 3]},
        "model.embed_dim": {"type": "categorical", "choices": [8]},
    }
    tune = write_tune(tmp_path, data, space=space, derived={}, sampler={"type": "random"})
    result = run_study(tune, trials=6, out=tmp_path / "out", quiet=True)
    trials = finished(result.study)
    assert len(trials) == 6
    for t in trials:
        if t.params["model.num_heads"] == 3:
            assert t.state == optuna.trial.TrialState.PRUNED
            assert "model.embed_dim % model.num_heads == 0" in t.user_attrs["pruned_reason"]
            assert not (tmp_path / "out" / "trials" / f"trial-{t.number:04d}").exists()
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert np.isfinite(t.value)


def test_conditional_params_and_parse_errors() -> None:
    space = SearchSpace.from_dict(
        {
            "noise": {"type": "categorical", "choices": ["gaussian", "poisson"]},
            "pretrain.noise.gaussian": {
                "type": "float",
                "low": 0.01,
                "high": 0.1,
                "when": "noise == 'gaussian'",
            },
            "pretrain.noise.poisson": {
                "type": "float",
                "low": 10,
                "high": 100,
                "when": "noise == 'poisson'",
            },
        },
        {"pretrain.noise.types": "[noise]"},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        v = space.sample(study.ask(), {})
        assert v["pretrain.noise.types"] == [v["noise"]]
        assert set(v) == {"noise", "pretrain.noise.types", f"pretrain.noise.{v['noise']}"}
    with pytest.raises(ConfigError, match="not allowed"):
        SearchSpace.from_dict({"a": [1]}, constraints=["[x for x in a]"])
    with pytest.raises(ConfigError, match="may be called"):
        SearchSpace.from_dict({"a": [1]}, constraints=["__import__('os')"])
    with pytest.raises(ConfigError, match="type must be"):
        SearchSpace.from_dict({"a": {"type": "normal"}})
    with pytest.raises(ConfigError, match="log scale"):
        SearchSpace.from_dict({"a": {"type": "float", "low": 0, "high": 1, "log": True}})


def test_shipped_tune_configs_parse() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    hybrid = load_tune_config(root / "tune-hybrid.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    base = flatten(hybrid.best_config({}))
    for _ in range(30):
        try:
            v = hybrid.space.sample(study.ask(), base)
        except Exception as exc:  # noqa: BLE001 - only constraint violations are expected
            assert "constraint" in str(exc)
            continue
        assert v["model.embed_dim"] % v["model.num_heads"] == 0
    assert {"gan", "pretrain"} == {
        load_tune_config(root / f"tune-{s}.yaml").stage for s in ("gan", "pretrain")
    }


# ------------------------------------------------------------------- trainer hook, pruning
def test_trainer_on_validation_hook_and_stop(tmp_path: Path, data: Path) -> None:
    calls: list[tuple[int, float]] = []

    def record(step: int, metrics: dict) -> None:
        calls.append((step, metrics["val_psnr"]))

    cfg = base_config(data, tmp_path)
    cfg["budget"]["steps"] = 4
    trainer = Engine("supervised", cfg, out=tmp_path / "a", quiet=True, on_validation=record)
    trainer.run()
    assert [s for s, _ in calls] == [2, 4]
    assert [v for _, v in calls] == [h["val_psnr"] for h in trainer.history]

    def stop(step: int, metrics: dict) -> None:
        raise StopTraining("enough")

    trainer = Engine("supervised", cfg, out=tmp_path / "b", quiet=True, on_validation=stop)
    with pytest.raises(StopTraining, match="enough"):
        trainer.run()
    assert trainer.step == 2
    assert (tmp_path / "b" / "best.safetensors").exists()


def test_bad_reports_get_pruned(tmp_path: Path, data: Path) -> None:
    tune = load_tune_config(write_tune(tmp_path, data, trial={"budget.steps": 8}))
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    params = {"model.num_heads": 2, "head_dim": 4, "model.embed_dim": 8}

    def objective(trial: optuna.Trial, offset: float) -> float:
        def report(step: int, metrics: dict) -> None:
            trial.report(metrics["val_psnr"] + offset, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"step {step}")

        value, history = run_trial(tune, params, tmp_path / f"t{trial.number}", report)
        trial.set_user_attr("steps", [h["step"] for h in history])
        return value + offset

    study.optimize(lambda t: objective(t, 0.0), n_trials=1)
    study.optimize(lambda t: objective(t, -100.0), n_trials=2)
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.COMPLETE
    assert states[1:] == [optuna.trial.TrialState.PRUNED] * 2
    assert study.trials[0].user_attrs["steps"] == [2, 4, 6, 8]
    for t in study.trials[1:]:
        assert max(t.intermediate_values) == 2  # stopped at the first validation


# -------------------------------------------------------------------- resume and workers
def test_resume_after_crash_reaches_target(tmp_path: Path, data: Path) -> None:
    tune = write_tune(tmp_path, data)
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    out = tmp_path / "out"
    first = run_study(tune, trials=2, storage=url, study_name="s", out=out, quiet=True)
    assert len(finished(first.study)) == 2
    # a worker that died in the middle of a trial: RUNNING with a stale heartbeat
    # Sleep well past the grace period: staleness is judged from stored timestamps, and a dead
    # trial not yet judged stale counts as live (the run would then stop one trial short).
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="s", storage=storage)
    dead = study.ask()
    storage.record_heartbeat(dead._trial_id)
    time.sleep(5.0)
    second = run_study(
        tune, trials=4, storage=url, study_name="s", out=out, quiet=True,
        heartbeat_interval=1, grace_period=2,
    )  # fmt: skip
    trials = second.study.get_trials()
    done = finished(second.study)
    assert len(done) == 4, [(t.number, t.state.name) for t in trials]
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    assert len({t.number for t in trials}) == len(trials)
    assert second.ran == 2
    best = out / "best.yaml"
    assert best.exists() and (out / "history.png").exists() and (out / "trials.csv").exists()


def _postgres_program(name: str) -> str:
    """A PostgreSQL server program: on PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    assert found, f"{name} not found: install Debian's postgresql (make postgres)"
    return found


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL cluster in a temporary folder, reached through a Unix socket in
    it (no TCP port). The server refuses to run as root, so as root it runs as `postgres`."""
    root = Path(tempfile.mkdtemp(prefix="lenssr-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
    run([*as_user, _postgres_program("initdb"), "-D", str(data), "-A", "trust", "-U", "lenssr",
         "--no-sync"])  # fmt: skip
    opts = f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off"
    pg_ctl = _postgres_program("pg_ctl")
    run([*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"])
    try:
        yield f"postgresql+psycopg://lenssr@/postgres?host={root}"
    finally:
        run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _two_workers_share_one_study(tmp_path: Path, data: Path, url: str) -> None:
    """Two `lenssr tune` processes on one study reach its 4-trial target together."""
    tune = write_tune(tmp_path, data)
    optuna.create_study(study_name="w", storage=url, direction="maximize")  # no create race
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lenssr.cli", "tune", "--config", str(tune), "--trials", "4",
           "--storage", url, "--study", "w"]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(tmp_path / f"out{i}"), "--seed", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    study = optuna.load_study(study_name="w", storage=url)
    done = finished(study)
    assert len(done) == 4
    assert len({t.number for t in done}) == 4
    others = [t for t in study.trials if t not in done]
    assert all(t.user_attrs.get("fail_reason") == "target reached by other workers" for t in others)
    assert any("trial 0 " in log or "trial 1 " in log for log in logs)
    # both workers ran trials: each process's output folder holds trial runs
    assert all(list((tmp_path / f"out{i}" / "trials").glob("trial-*")) for i in range(2)), logs


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path, data: Path) -> None:
    _two_workers_share_one_study(tmp_path, data, f"sqlite:///{tmp_path / 'tune.db'}")


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(
    tmp_path: Path, data: Path, postgres_url: str
) -> None:
    _two_workers_share_one_study(tmp_path, data, postgres_url)
    storage = optuna.storages.RDBStorage(postgres_url)
    assert storage.engine.dialect.name == "postgresql"  # the study really lives in PostgreSQL


def test_best_yaml_loads_and_trains(tmp_path: Path, data: Path) -> None:
    tune = write_tune(tmp_path, data)
    result = run_study(tune, trials=3, out=tmp_path / "out", quiet=True)
    best = result.files["best"]
    cfg = load_config(best, ["budget.steps=2"])
    trial = result.study.best_trial
    assert cfg["model"]["num_heads"] == trial.params["model.num_heads"]
    assert cfg["model"]["embed_dim"] == trial.params["model.num_heads"] * trial.params["head_dim"]
    assert cfg["budget"]["steps"] == 2
    assert load_config(best)["budget"]["steps"] == 40  # the base's budget, not the trial's
    assert "defaults" not in yaml.safe_load(best.read_text())
    path = train(cfg, quiet=True)
    assert path.exists()


def stage_tune(tmp_path: Path, data: Path, stage: str) -> tuple[TuneConfig, dict]:
    """A tune config of `stage` (pretrain or gan) on the tiny data, and one trial's params."""
    extra: dict = {
        "stage": stage,
        "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-3}},
    }
    extra["derived"], extra["constraints"] = {}, []
    if stage == "pretrain":
        extra["space"]["noise"] = {"type": "categorical", "choices": ["gaussian"]}
        extra["space"]["pretrain.noise.gaussian"] = {"type": "float", "low": 0.01, "high": 0.1}
        extra["derived"] = {"pretrain.noise.types": "[noise]"}
        extra["finetune"] = {"budget.steps": 2, "schedule.total_steps": 2}
    else:
        extra["set"] = {
            "gan.discriminator.num_feat": 4,
            "gan.discriminator.num_layers": 1,
            "gan.weights.perceptual": 0.0,
        }
    tune = load_tune_config(write_tune(tmp_path, data, **extra))
    params = {"optim.lr": 3e-4, "noise": "gaussian", "pretrain.noise.gaussian": 0.05}
    params = {k: v for k, v in params.items() if stage == "pretrain" or k == "optim.lr"}
    return tune, params


@pytest.mark.parametrize("stage", ["pretrain", "gan"])
def test_pretrain_and_gan_stages_run_a_trial(tmp_path: Path, data: Path, stage: str) -> None:
    tune, params = stage_tune(tmp_path, data, stage)
    reports: list[tuple[int, dict]] = []
    value, history = run_trial(tune, params, tmp_path / "t", lambda s, m: reports.append((s, m)))
    assert np.isfinite(value) and value == max(h["val_psnr"] for h in history)
    if stage == "pretrain":
        # pretraining validations (steps 2, 4 of 4) first, then the fine-tune's after them
        assert [s for s, _ in reports] == [2, 4, 6] and [h["step"] for h in history] == [2]
        assert all(PRETRAIN_METRIC in m and np.isfinite(m[PRETRAIN_METRIC]) for _, m in reports[:2])
        assert reports[2][1]["val_psnr"] == history[0]["val_psnr"]
        assert trial_steps(tune, tmp_path) == 6
    else:
        assert [s for s, _ in reports] == [h["step"] for h in history] == [2, 4]


@pytest.mark.parametrize("stage", ["pretrain", "gan"])
def test_pretrain_and_gan_trials_are_pruned_on_validation(
    tmp_path: Path, data: Path, stage: str
) -> None:
    """The study's reporter prunes a trial whose first validation is far worse than a finished
    trial's: for pretrain trials already during pretraining (a higher denoising loss is worse
    although the objective, PSNR, is maximised)."""
    tune, params = stage_tune(tmp_path, data, stage)
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )

    def objective(trial: optuna.Trial, worse: bool) -> float:
        report = pruning_report(trial, tune)

        def worsened(step: int, metrics: dict) -> None:
            shift = {PRETRAIN_METRIC: 100.0, "val_psnr": -100.0}
            report(step, {k: v + shift.get(k, 0.0) * worse for k, v in metrics.items()})

        value, _ = run_trial(tune, params, tmp_path / f"t{trial.number}", worsened)
        return value

    study.optimize(lambda t: objective(t, False), n_trials=1)
    study.optimize(lambda t: objective(t, True), n_trials=1)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert second.state == optuna.trial.TrialState.PRUNED
    assert list(second.intermediate_values) == [2]  # stopped at its first validation
    name = PRETRAIN_METRIC if stage == "pretrain" else "val_psnr"
    assert second.user_attrs["pruned_reason"].startswith(f"pruned at step 2 ({name}")
    if stage == "pretrain":
        assert not (tmp_path / "t1" / "finetune").exists()  # never fine-tuned
        assert first.intermediate_values[2] < 0  # the loss, negated for a maximised objective


def completed_trials(db: Path) -> int:
    """Finished trials in an Optuna SQLite file, read without Optuna: opening the storage from
    here would create its tables while the study process creates them too (a race)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or locked by the writer
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_tune_command_resumes_to_the_trial_count(
    sig: signal.Signals, tmp_path: Path, data: Path, interruptible: dict
) -> None:
    """``lenssr tune`` stopped by Ctrl-C or SIGKILL mid-study: the same command run again
    finishes the study with the requested number of finished trials and its report."""
    tune = write_tune(tmp_path, data)
    db = tmp_path / "tune.db"
    cmd = [
        sys.executable, "-m", "lenssr.cli", "tune", "--config", str(tune), "--trials", "4",
        "--storage", f"sqlite:///{db}", "--study", "s", "--out", str(tmp_path / "out"),
        "--heartbeat", "1", "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, **interruptible)
    end = time.time() + 300
    while True:  # interrupt once the first trial has finished
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < end, "no trial finished"
        if completed_trials(db):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err, err
    first = len(finished(optuna.load_study(study_name="s", storage=f"sqlite:///{db}")))
    assert first < 4, "the study finished before it was interrupted"
    time.sleep(3.0)  # past the heartbeat grace period, so a killed trial counts as dead
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert len(finished(study)) == 4
    assert (tmp_path / "out" / "best.yaml").exists()


def test_fixed_top_level_keys_reach_every_trial() -> None:
    """``set: {init: ...}`` (no dot) is part of every trial's config; sampled names without a
    dot are the space's helpers and are not."""
    from lenssr.tune.space import apply_values

    tune = load_tune_config(Path(__file__).resolve().parents[1] / "configs" / "tune-gan.yaml")
    cfg = tune.trial_config({}, Path("out"))
    assert cfg["init"] == "runs/hybrid/best.safetensors"
    assert "noise" not in apply_values({}, {"noise": "gaussian", "a.b": 1})
    assert apply_values({}, {"init": "w"}, auxiliary=False) == {"init": "w"}


def test_a_trial_left_without_a_heartbeat_is_failed(tmp_path: Path) -> None:
    """A worker stopped between creating a trial and starting its heartbeat leaves a RUNNING
    trial with no heartbeat: past the grace period it is failed, while a trial whose worker
    beats stays RUNNING (optuna's own stale check would keep both)."""
    from lenssr.tune.study import fail_orphan_trials, make_storage

    storage = make_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="o", storage=storage)
    orphan, live = study.ask(), study.ask()
    assert fail_orphan_trials(study, storage) == 0  # both younger than the grace period
    time.sleep(1.3)
    storage.record_heartbeat(live._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert fail_orphan_trials(study, storage) == 1
    states = {t.number: t.state for t in study.get_trials()}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert states[live.number] == optuna.trial.TrialState.RUNNING
    assert "stopped" in study.get_trials()[orphan.number].user_attrs["fail_reason"]

"""Sweeps: one training run per combination of a grid, planned once, run on the devices there are.

checkpoints/<name>/
  sweep.json          the plan: base TrainConfig, the grid, one member per combination
  sweep_status.json   the runner's pid and state (running / finished / stopped / failed)
  sweep.log           the runner's output when it was launched in the background
  <member>/           an ordinary run folder per member (see core.runs.folder)

Grid values: `--grid loss=l1,l2,0.5*ssim+0.5*l1` separates values with ','. When a value itself
holds a comma (skip levels "1,2"), separate the values with '|' instead: `--grid
model.skips=all|none|1,2`; as soon as '|' appears, ',' belongs to the values. Loss mixes use
'+', so they never need '|'.

Members are launched through core.training.jobs (a `python -m core train` process each, with status.json
and train.log in its folder): one at a time per visible GPU (CUDA_VISIBLE_DEVICES pins each to
its own, and RECONSCOPE_JOBS splits the CPU cores between them, core.training.threads), one after
another on the CPU. Starting a sweep again skips finished members and
resumes partial ones. Nothing here imports Streamlit.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import TRAIN_FLAGS, TrainConfig
from core.runs.folder import Run, RunError, atomic_write_json, is_alive

PLAN_FILE = "sweep.json"
STATUS_FILE = "sweep_status.json"
LOG_FILE = "sweep.log"
# Short names accepted in --grid, the same names `python -m core train` has flags for.
ALIASES = {"image_size": "image_size", "image-size": "image_size", "depth": "model.depth",
           "skips": "model.skips", "base_width": "model.base_width", "base-width": "model.base_width",
           "norm": "model.norm", "activation": "model.activation", "batch_size": "batch_size",
           "batch-size": "batch_size", "threads": "num_threads"}


class SweepError(ValueError):
    """A grid, plan or sweep folder cannot be used; the message says which and what to do."""


# --------------------------------------------------------------------------- the grid


def split_values(text: str) -> list[str]:
    """'a,b,c' -> [a, b, c]; with any '|' present, '|' separates and commas stay in values."""
    separator = "|" if "|" in text else ","
    values = [v.strip() for v in text.split(separator)]
    if not all(values):
        raise SweepError(f"grid values '{text}': an empty value; separate values with ',' (or '|' when "
                         "a value contains a comma, e.g. model.skips=all|none|1,2)")
    return values


def _default_of(key: str) -> Any:
    value: Any = TrainConfig().to_dict()
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SweepError(f"grid key '{key}': not a TrainConfig field (e.g. loss, model.skips, "
                             "model.depth, lr, epochs, augment.dropout_p)")
        value = value[part]
    return value


def typed_value(key: str, text: str) -> Any:
    """A grid value converted to the type of the config field's default ("2" -> 2 for depth)."""
    default = _default_of(key)
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
        return json.loads(text)
    except (ValueError, json.JSONDecodeError) as err:
        raise SweepError(f"grid value '{text}' for '{key}': expected {type(default).__name__} "
                         f"like the default {default!r}") from err


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """['loss=l1,l2', 'model.skips=all|none|1,2'] -> {"loss": ["l1", "l2"], "model.skips": [...]}.

    Keys are TrainConfig fields (dotted) or the train flags' short names (skips, depth, ...);
    values are typed like the field's default. Raises SweepError naming the bad item.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise SweepError(f"--grid '{item}': write KEY=V1,V2 (e.g. loss=l1,l2)")
        if key in ("run", "data"):
            raise SweepError(f"--grid '{item}': '{key}' is fixed per sweep; give it as --{key}")
        if key in grid:
            raise SweepError(f"--grid '{item}': '{key}' is given twice; put all its values in one --grid")
        parsed = [typed_value(key, v) for v in split_values(values)]
        if len(set(map(repr, parsed))) != len(parsed):
            raise SweepError(f"--grid '{item}': a value is repeated")
        grid[key] = parsed
    if not grid:
        raise SweepError("a sweep needs at least one --grid KEY=V1,V2")
    return grid


def member_name(overrides: dict[str, Any]) -> str:
    """A folder name from the member's values, e.g. loss-0.5ssim+0.5l1_skips-1-2."""
    parts = []
    for key, value in overrides.items():
        text = re.sub(r"[^A-Za-z0-9.+-]+", "", str(value).replace(",", "-").replace(" ", ""))
        parts.append(f"{key.rsplit('.', 1)[-1]}-{text or 'x'}")
    return "_".join(parts)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SweepMember:
    """One combination: its folder name and the config fields it sets (dotted keys)."""

    name: str
    overrides: dict[str, Any]


@dataclass
class SweepPlan:
    """A sweep: base config, grid and members; `folder` is checkpoints/<name>."""

    folder: Path
    base: TrainConfig
    grid: dict[str, list[Any]]
    members: list[SweepMember] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name

    def run_path(self, member: SweepMember) -> Path:
        return self.folder / member.name

    def config(self, member: SweepMember) -> TrainConfig:
        return self.base.with_overrides({**member.overrides, "run": str(self.run_path(member))})

    def runs(self) -> list[Run]:
        return [Run(self.run_path(m)) for m in self.members]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "grid": self.grid, "base": self.base.to_dict(),
                "members": [{"name": m.name, "overrides": m.overrides} for m in self.members]}

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / PLAN_FILE, self.to_dict())


def plan_sweep(folder: str | Path, base: TrainConfig, grid: dict[str, list[Any]]) -> SweepPlan:
    """Every combination of the grid (first key varies slowest), each config validated now.

    Raises SweepError naming the member whose config is invalid (e.g. an image size that
    2**depth does not divide).
    """
    folder = Path(folder).expanduser()
    members, seen = [], set()
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values, strict=True))
        name = member_name(overrides)
        if name in seen:
            name = f"{name}_{len(members) + 1}"
        seen.add(name)
        member = SweepMember(name, overrides)
        members.append(member)
    plan = SweepPlan(folder, base.with_overrides({"run": str(folder)}), grid, members)
    for member in members:
        try:
            plan.config(member)
        except ValueError as err:
            raise SweepError(f"sweep member {member.name}: {err}") from err
    return plan


def load_plan(folder: str | Path) -> SweepPlan:
    """The plan in folder/sweep.json; SweepError when it is absent or unreadable."""
    folder = Path(folder).expanduser()
    path = folder / PLAN_FILE
    if not path.is_file():
        raise SweepError(f"{path}: no sweep plan here; start one with python -m core sweep --name "
                         f"{folder.name} --data D --grid KEY=V1,V2")
    try:
        raw = json.loads(path.read_text())
        members = [SweepMember(m["name"], dict(m["overrides"])) for m in raw["members"]]
        return SweepPlan(folder, TrainConfig.from_dict(raw["base"]), dict(raw["grid"]), members)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise SweepError(f"{path}: not a readable sweep plan ({err}); delete it to plan the sweep again") from err


def is_sweep(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / PLAN_FILE).is_file()


def _comparable(plan: SweepPlan) -> dict[str, Any]:
    """The plan without where it lives (a relative and an absolute runs folder are the same)."""
    raw = plan.to_dict()
    raw["base"] = {k: v for k, v in raw["base"].items() if k != "run"}
    return json.loads(json.dumps(raw))


def open_or_plan(folder: str | Path, base: TrainConfig | None, grid: dict[str, list[Any]] | None,
                 require_data: bool = True) -> SweepPlan:
    """The saved plan when there is one (it must match a grid given again), else a new plan,
    saved once its data folder is found (require_data=False: a plan for another machine)."""
    folder = Path(folder).expanduser()
    if is_sweep(folder):
        plan = load_plan(folder)
        if grid is not None:
            fresh = plan_sweep(folder, base or plan.base, grid)
            if _comparable(fresh) != _comparable(plan):
                raise SweepError(f"{folder}: holds a different sweep (grid {plan.grid}); run it again "
                                 "without --grid to resume it, or choose another --name")
        return plan
    if grid is None or base is None:
        raise SweepError(f"{folder / PLAN_FILE}: no sweep plan here; give --data and --grid to plan one")
    plan = plan_sweep(folder, base, grid)
    if require_data:
        check_data(plan)
    plan.save()
    return plan


# --------------------------------------------------------------------------- member state


def member_state(plan: SweepPlan, member: SweepMember) -> str:
    """'done' (all planned epochs saved), 'running', 'partial' (some epochs) or 'new'."""
    run = Run(plan.run_path(member))
    if run.path.is_dir() and run.is_training():
        return "running"
    epochs = run.epochs()
    if epochs and epochs[-1] >= plan.config(member).epochs:
        return "done"
    return "partial" if epochs else "new"


def progress_table(plan: SweepPlan) -> list[dict[str, Any]]:
    """One row per member: member, its grid values (by their last key part), state, saved and
    planned epochs, job (status.json state) and message."""
    rows = []
    for member in plan.members:
        run = Run(plan.run_path(member))
        status = run.status() if run.path.is_dir() else {}
        rows.append({"member": member.name, **{k.rsplit(".", 1)[-1]: str(v) for k, v in member.overrides.items()},
                     "state": member_state(plan, member), "saved": len(run.epochs()),
                     "planned": plan.config(member).epochs, "job": status.get("state", ""),
                     "message": status.get("message", "")})
    return rows


# --------------------------------------------------------------------------- commands


def _flag_table() -> dict[str, str]:
    return {key: "--" + flag.replace("_", "-") for flag, (key, _) in TRAIN_FLAGS.items()}


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = list(value) if isinstance(value, tuple) else value
    return out


def train_arguments(config: TrainConfig) -> list[str]:
    """`python -m core train` arguments that rebuild `config` from the defaults: a flag where
    train has one, --set KEY=JSON for every other field that differs from TrainConfig()."""
    flags = _flag_table()
    defaults = _flatten(TrainConfig().to_dict())
    args: list[str] = []
    for key, value in _flatten(config.to_dict()).items():
        if key != "run" and key != "data" and value == defaults.get(key):
            continue
        if key == "categories":
            args += ["--categories", ",".join(value)]
        elif key == "per_category" and value:
            args.append("--per-category")
        elif key == "augment.enabled" and not value:
            args.append("--no-augment")
        elif key == "synthetic_val" and not value:
            args.append("--no-synthetic-val")
        elif key in flags:
            args += [flags[key], str(value)]
        else:
            args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def member_command(plan: SweepPlan, member: SweepMember) -> list[str]:
    """The member's training command; --resume once it has epochs."""
    command = ["python", "-m", "core", "train", *train_arguments(plan.config(member))]
    if Run(plan.run_path(member)).epochs():
        command.append("--resume")
    return command


def print_commands(plan: SweepPlan) -> list[str]:
    """One shell line per member still to train (finished members are left out)."""
    return [shlex.join(member_command(plan, m)) for m in plan.members if member_state(plan, m) != "done"]


# --------------------------------------------------------------------------- running


def visible_gpus(device: str) -> list[int]:
    """Indices of the GPUs members may use: every one torch sees, unless device is cpu."""
    if device == "cpu":
        return []
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@dataclass
class SweepOutcome:
    """How each member ended in this call: finished, failed, stopped, skipped (already done or
    training elsewhere)."""

    states: dict[str, str]

    @property
    def ok(self) -> bool:
        return all(s in ("finished", "skipped") for s in self.states.values())


def write_sweep_status(plan: SweepPlan, **fields: Any) -> None:
    path = plan.folder / STATUS_FILE
    current = sweep_status(plan.folder) if path.is_file() else {}
    current.update(fields, updated=time.time())
    atomic_write_json(path, current)


def sweep_status(folder: str | Path) -> dict[str, Any]:
    """The runner's state; a 'running' runner whose process is gone reads 'stopped'."""
    path = Path(folder).expanduser() / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"state": "none"}
    from core.training.jobs import reap_if_done

    reap_if_done(status.get("pid"))  # a runner this process launched and that has ended
    if status.get("state") == "running" and not is_alive(status.get("pid")):
        status["state"] = "stopped"
    return status


def check_data(plan: SweepPlan) -> None:
    """Refuses to launch members that would all fail on a missing data folder."""
    folders = {Path(plan.config(m).data).expanduser() for m in plan.members}
    missing = sorted(str(f) for f in folders if not f.is_dir())
    if missing:
        raise SweepError(f"data folder {', '.join(missing)} does not exist; give the sweep an existing --data")


def _start(plan: SweepPlan, member: SweepMember, gpu: int | None, jobs: int = 1) -> Run:
    """Launches one member; `jobs` members train at once, so each takes that share of the
    CPU cores (core.training.threads, through RECONSCOPE_JOBS)."""
    from core.training.jobs import start_training
    from core.training.threads import child_env

    config = plan.config(member)
    env = {"CUDA_VISIBLE_DEVICES": str(gpu), **child_env(jobs)} if gpu is not None else None
    start_training(config, resume=bool(Run(plan.run_path(member)).epochs()), env=env)
    return Run(plan.run_path(member))


def run_sweep(plan: SweepPlan, gpus: Sequence[int] | None = None, poll_s: float = 0.5,
              log: Callable[[str], None] = print) -> SweepOutcome:
    """Trains every member not done yet: one job per GPU at a time, or one after another on
    the CPU (gpus empty). Blocks until all have ended; on KeyboardInterrupt (Ctrl-C, or SIGTERM
    via the CLI) the running members are stopped, keeping their finished epochs."""
    from core.training.jobs import reap, stop_training

    check_data(plan)
    gpus = list(visible_gpus(plan.base.device) if gpus is None else gpus)
    slots: list[int | None] = list(gpus) or [None]
    states: dict[str, str] = {}
    pending = []
    for member in plan.members:
        state = member_state(plan, member)
        if state in ("done", "running"):
            states[member.name] = "skipped"
            log(f"{member.name}: {'already finished' if state == 'done' else 'training elsewhere'}, skipped")
        else:
            pending.append(member)
    active: dict[int | None, tuple[SweepMember, Run]] = {}
    write_sweep_status(plan, state="running", pid=os.getpid(), started=time.time(), message="")
    try:
        while pending or active:
            for slot in [s for s in slots if s not in active]:
                if not pending:
                    break
                member = pending.pop(0)
                where = "the CPU" if slot is None else f"GPU {slot}"
                log(f"{member.name}: {'resuming' if Run(plan.run_path(member)).epochs() else 'starting'} on {where}")
                try:
                    active[slot] = (member, _start(plan, member, slot, len(slots)))
                except RunError as err:  # e.g. started elsewhere meanwhile: the others still run
                    states[member.name] = "failed"
                    log(f"{member.name}: not started: {err}")
            for slot, (member, run) in list(active.items()):
                state = run.status().get("state")
                if state in ("finished", "failed", "stopped"):
                    reap(run.status().get("pid"))
                    states[member.name] = state
                    log(f"{member.name}: {state} ({len(run.epochs())} epochs)")
                    del active[slot]
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for member, run in active.values():
            stop_training(run)
            reap(run.status().get("pid"))
            states[member.name] = "stopped"
        write_sweep_status(plan, state="stopped", message="stopped by request; start it again to resume")
        raise
    outcome = SweepOutcome(states)
    write_sweep_status(plan, state="finished" if outcome.ok else "failed",
                       message="" if outcome.ok else "some members failed; see their train.log")
    return outcome


def start_sweep(plan: SweepPlan) -> int:
    """Runs the sweep in a background process (`python -m core sweep --folder F`) and returns its
    pid; its output goes to folder/sweep.log. Refuses when the sweep is already running."""
    if sweep_status(plan.folder).get("state") == "running":
        raise RunError(f"{plan.folder}: this sweep is already running; stop it first")
    check_data(plan)
    plan.save()
    command = [sys.executable, "-m", "core", "sweep", "--folder", str(plan.folder)]
    from core.training.jobs import launch_detached

    process = launch_detached(command, plan.folder / LOG_FILE)  # reaped by stop_sweep or sweep_status
    write_sweep_status(plan, state="running", pid=process.pid, started=time.time(), message="starting")
    return process.pid


def stop_sweep(folder: str | Path, timeout: float = 20.0) -> bool:
    """SIGTERM to the runner: it stops its running members (finished epochs are kept)."""
    status = sweep_status(folder)
    pid = status.get("pid")
    if status.get("state") != "running" or not is_alive(pid):
        return False
    os.kill(int(pid), signal.SIGTERM)
    from core.training.jobs import reap

    try:
        reap(pid, timeout)  # launched by this process (the dashboard): wait for it
    except subprocess.TimeoutExpired:
        return False
    deadline = time.time() + timeout
    while time.time() < deadline and is_alive(pid):
        time.sleep(0.1)
    return not is_alive(pid)


def sweep_log_tail(folder: str | Path, lines: int = 30) -> str:
    path = Path(folder).expanduser() / LOG_FILE
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

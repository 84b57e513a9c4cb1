"""`shuffletvm choose`: each tuned kernel's schedule chosen by its time inside the running model.

MetaSchedule ranks a kernel's records by the kernel's time alone, called again and again on the same inputs
(warm). In the model a kernel reads what the kernel before it wrote, from another core's cache or from L3, and
the ranking can turn: on the Rocket Lake class V2 1.0x's 14x14 stage-buffer convs ran 225 us in sequence with
their hand-written schedules and 290 with the log's best records, which had measured faster alone.

For every model (at the batch given), two builds with the same kernels: one with the tuning log's records
(`in_model.json`'s earlier choices left out), one with the hand-written schedules only (TVM's default schedule
for the few kernels no rule claims: "hand" below means the build without the log). Both kernel sequences
are recorded and replayed in interleaved rounds (bench/sequence.py); a kernel's time is the median of each of its
calls in sequence, summed over its calls and over the models that share it. Where the hand schedule is faster by
more than `margin`, `in_model.json` gives the kernel its hand schedule: builds leave its records out. Where the
record wins, an earlier such choice is withdrawn. Kernels the two builds schedule alike (no record, or a kernel
the graph passes wrote) are not compared. Last, each model a choice touches is built with the file and timed
against the log's records end to end, interleaved (the ratio is printed; above 1 + margin, a warning).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ..errors import ShuffleTVMError
from ..targets import TargetOptions, resolve_target

logger = logging.getLogger(__name__)

# ProduceIntoConcat's kernels are copies of a scheduled kernel, named after it
_INTO_CONCAT = re.compile(r"_into_concat\d*$")


@dataclass
class ChooseConfig:
    models: list[str]
    target: str = "x86"
    target_options: TargetOptions = field(default_factory=TargetOptions)
    batch: int = 1
    log_dir: Path | None = None
    rounds: int = 30
    margin: float = 0.03  # the hand schedule must be this much faster (a fraction) to be chosen


@dataclass
class KernelChoice:
    kernel: str  # as the first model that calls it names it
    workload: str  # the workload's structural hash, as the log writes it
    models: list[str]
    calls: int
    record_us: float  # in sequence, summed over its calls in every model
    hand_us: float
    hand: bool  # the hand schedule is chosen


@dataclass
class ChooseResult:
    log: Path
    choices: list[KernelChoice]
    end_to_end_ms: dict[str, tuple[float, float]]  # model -> (as the log builds it, hand schedules only)
    checked: dict[str, float]  # model -> built with the choices / without, end to end (paired, interleaved)


def choose(config: ChooseConfig) -> ChooseResult:
    from .. import runtime
    from ..bench.sequence import kernel_calls, replay
    from ..build import BuildConfig, build
    from ..models.registry import get_spec
    from .database import open_log, save_choices

    if config.rounds < 1:
        raise ShuffleTVMError(f"--rounds must be at least 1, got {config.rounds}")
    if not 0 <= config.margin < 1:
        raise ShuffleTVMError(f"--margin must be a fraction in [0, 1), got {config.margin}")
    if config.batch < 1:
        raise ShuffleTVMError(f"batch must be at least 1, got {config.batch}")
    for model in config.models:
        get_spec(model)
    target = resolve_target(config.target, config.target_options)
    if target.name != "x86":
        raise ShuffleTVMError(f"choose times the model on this machine: target x86, not '{config.target}'")
    if not open_log(target, config.log_dir, create=False).records:  # nothing on disk made for nothing
        raise ShuffleTVMError(f"no tuning records for {target.log_key} under "
                              f"'{config.log_dir or 'tuning_logs/'}' to choose from; run `shuffletvm tune` first")
    log = open_log(target, config.log_dir, create=True)  # checks it can be written before the builds

    times: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # workload -> record, hand us
    names: dict[str, str] = {}
    users: dict[str, list[str]] = defaultdict(list)
    calls_of: dict[str, int] = defaultdict(int)
    end_to_end: dict[str, tuple[float, float]] = {}
    checked: dict[str, float] = {}
    kernels_of: dict[str, set[str]] = {}  # model -> its workloads
    with tempfile.TemporaryDirectory(prefix="shuffletvm-choose-") as tmp:
        for model in config.models:
            built = {}
            for label, options in (("record", {}), ("hand", {"use_tuning_logs": False})):
                built[label] = build(BuildConfig(
                    output=Path(tmp) / f"{model}.{label}.so", model=model, target=config.target,
                    batch=config.batch, target_options=config.target_options, log_dir=config.log_dir,
                    in_model_choices=False, **options))
            modules = {label: runtime.load(result.path) for label, result in built.items()}
            x = np.random.default_rng(0).random(modules["record"].input_shape, dtype=np.float32)
            outputs = {label: module.run(x) for label, module in modules.items()}
            scale = float(np.abs(outputs["hand"]).max())
            if not np.allclose(outputs["record"], outputs["hand"], rtol=0, atol=1e-4 * scale):
                raise ShuffleTVMError(f"{model}: the tuned and hand-written builds disagree; not choosing")
            rounds = [[np.median(m.time_run(x, repeat=10)) for m in modules.values()] for _ in range(5)]
            end_to_end[model] = tuple(float(t) * 1e3 for t in np.median(rounds, axis=0))
            sequences = {label: kernel_calls(module, x) for label, module in modules.items()}
            if [c[0] for c in sequences["record"]] != [c[0] for c in sequences["hand"]]:
                raise ShuffleTVMError(f"{model}: the two builds call different kernels; not choosing")
            logger.info("%s: %d kernel calls, replayed in %d interleaved rounds", model,
                        len(sequences["record"]), config.rounds)
            profile = replay(sequences, config.rounds)
            workloads = built["record"].workloads
            kernels_of[model] = set(workloads.values())
            for i, (name, _func, _args) in enumerate(sequences["record"]):
                workload = workloads.get(_INTO_CONCAT.sub("", name))
                if workload is None:  # written by a graph pass: the same kernel in both builds
                    continue
                times[workload][0] += profile["record"][0][i] * 1e6
                times[workload][1] += profile["hand"][0][i] * 1e6
                names.setdefault(workload, _INTO_CONCAT.sub("", name))
                calls_of[workload] += 1
                if model not in users[workload]:
                    users[workload].append(model)

        # only the kernels with records of their own differ between the two builds (a batch-N kernel that replays
        # its batch-1 kernel's record has none: not compared)
        tuned = set(times) & log.recorded_workloads()
        chosen = dict(log.hand_chosen)
        choices = []
        for workload in sorted(tuned, key=lambda w: times[w][1] - times[w][0]):
            record_us, hand_us = times[workload]
            hand = hand_us < record_us * (1 - config.margin)
            choices.append(KernelChoice(names[workload], workload, users[workload], calls_of[workload],
                                        record_us, hand_us, hand))
            if hand:
                chosen[workload] = {"kernel": names[workload], "models": users[workload], "batch": config.batch,
                                    "record_us": round(record_us, 1), "hand_us": round(hand_us, 1),
                                    "rounds": config.rounds, "date": date.today().isoformat()}
            else:
                chosen.pop(workload, None)
        save_choices(log, chosen)
        logger.info("%s: %d of %d kernels take their hand-written schedule", log.choice_file,
                    sum(c.hand for c in choices), len(choices))

        # the choices at work: each model they touch built with them, against the log's records, end to end
        for model in (m for m in config.models if kernels_of[m] & set(chosen)):
            with_choices = build(BuildConfig(
                output=Path(tmp) / f"{model}.chosen.so", model=model, target=config.target, batch=config.batch,
                target_options=config.target_options, log_dir=config.log_dir))
            checked[model] = _paired_ratio(runtime.load(with_choices.path),
                                           runtime.load(Path(tmp) / f"{model}.record.so"))
            if checked[model] > 1 + config.margin:
                logger.warning("%s runs %.2fx the time with the choices: rerun `shuffletvm choose` with more "
                               "--rounds on a quieter machine", model, checked[model])
    return ChooseResult(log.path, choices, end_to_end, checked)


def _paired_ratio(model: object, baseline: object, rounds: int = 15) -> float:
    """Median over interleaved rounds of each round's time ratio (a shared machine's drift moves both)."""
    x = np.random.default_rng(0).random(baseline.input_shape, dtype=np.float32)
    ratios = []
    for _ in range(rounds):
        base = np.median(baseline.time_run(x, repeat=10))
        ratios.append(np.median(model.time_run(x, repeat=10)) / base)
    return float(np.median(ratios))

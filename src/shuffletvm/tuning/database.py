"""Tuning logs: one MetaSchedule JSON database per target, under `tuning_logs/<target key>/`.

MetaSchedule's records are not target-aware (a lookup matches the workload only), so each target gets its own
folder, stamped with `target.json`; opening a folder stamped for another target is refused. The two JSON-lines
files are appended one record at a time as tuning runs, so killing the tuner loses no finished record. A line
that does not parse (a torn write, a hand edit) would make TVM's loader fail: `open_log` moves such lines to
`<file>.rejected` — counted, kept, never deleted — before TVM reads the files. Opening a log only to build
with it (`writable=False`) never touches the files: the valid lines are read into a private copy, so a build
can run while a tuner appends.

A target with no log of its own can use a *kindred* target's: the same preset, machine and SIMD width, on
another CPU model or core count (`kindred_log`). MetaSchedule's records are schedules of target-independent
TensorIR, so a kindred CPU's record always builds and computes the same; it is only tuned for another chip.
`build` applies one when the target has none (and says so), and `tune` starts a new log's kernels from it. With
no log of its own width, `tune` seeds from another width's (`any_width`): the kernels the layout phase does not
pack (depthwise, stem, grouped and stage-buffer convs) are the same TensorIR at every width.

`in_model.json` beside the two files holds the kernels whose hand-written schedule ran faster inside the running
model than the log's best record (`shuffletvm choose`, tuning/in_model.py): a build leaves their records out, so
the hand schedule applies. Records are ranked by each kernel's time alone and warm; in the model a kernel's
inputs come from the kernel before it, and the ranking can turn. A corrupt file is ignored with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ShuffleTVMError
from ..fileio import write_text_atomic
from ..targets import ResolvedTarget

logger = logging.getLogger(__name__)

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
MANIFEST = "target.json"
CHOICES = "in_model.json"


def workload_key(mod: Any) -> str:
    """A kernel's workload as the log names it (the first field of its database_workload.json line): the
    structural hash of its IRModule as MetaSchedule normalizes it (`tune_context._normalize_mod`)."""
    import tvm_ffi

    return str(tvm_ffi.structural_hash(mod))


def _workload_keys(workload_lines: list[str]) -> list[str]:
    """Each workload line's key, by the index records name it with."""
    return [json.loads(line)[0] for line in workload_lines]


def default_log_root() -> Path:
    """`tuning_logs/` of this checkout, or the copy shipped inside the package."""
    env = os.environ.get("SHUFFLETVM_TUNING_LOGS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    checkout = here.parents[3] / "tuning_logs"
    return checkout if checkout.is_dir() else here.parents[1] / "tuning_logs"


@dataclass
class TuningLog:
    path: Path
    target: ResolvedTarget
    workloads: int = 0
    records: int = 0
    rejected: int = 0
    writable: bool = True
    # target.json's "rows_ratio": which dense kernels the build splits by rows, and so how their records were
    # measured (PartitionRowsAcrossCores' `rows_ratio`); None: the pass's default
    rows_ratio: float | None = None
    _valid: tuple[list[str], list[str]] | None = None  # (workload lines, record lines) for a read-only log
    # in_model.json: workload hash (the workload line's first field) -> what `shuffletvm choose` measured, for
    # the kernels whose hand-written schedule beat the log's best record in the running model
    hand_chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    choices_corrupt: bool = False

    @property
    def workload_file(self) -> Path:
        return self.path / WORKLOADS

    @property
    def record_file(self) -> Path:
        return self.path / RECORDS

    def records_now(self) -> int:
        if not self.record_file.exists():
            return 0
        return sum(1 for line in self.record_file.read_text(errors="replace").splitlines() if line.strip())

    def recorded_workloads(self) -> set[str]:
        """The structural hashes (as the workload file writes them) of the workloads with at least one record."""
        if not self.record_file.exists():
            return set()
        hashes = _workload_keys([line for line in self.workload_file.read_text(errors="replace").splitlines()
                                 if line.strip()])
        return {hashes[json.loads(line)[0]] for line in self.record_file.read_text(errors="replace").splitlines()
                if line.strip()}

    def replace_earlier_times(self, since: int) -> int:
        """Drop the records before line `since` whose kernel and schedule a record from `since` on has too: the
        schedules `tune --remeasure` measured again keep only their new times, which replace the old ones rather
        than compete with them (a time is that of the day and the build it was measured in). Returns how many
        records were dropped; a database opened before this still holds them (open it again)."""
        if not self.record_file.exists():
            return 0
        lines = [line for line in self.record_file.read_text(errors="replace").splitlines() if line.strip()]
        again = {_schedule_key(line) for line in lines[since:]} - {None}
        kept = [line for line in lines[:since] if _schedule_key(line) not in again] + lines[since:]
        if len(kept) < len(lines):
            write_text_atomic("".join(line + "\n" for line in kept), self.record_file)
        return len(lines) - len(kept)

    @property
    def choice_file(self) -> Path:
        return self.path / CHOICES

    def database(self, with_choices: bool = False) -> Any:
        """MetaSchedule's JSON database over this log; for a read-only log, over a private copy of its valid
        lines (the database reads everything when constructed, so the copy can go right after). `with_choices`
        (a build's read-only log): without the records of the kernels `in_model.json` gives their hand schedule."""
        from tvm.s_tir import meta_schedule as ms

        if with_choices and self.writable:
            raise ValueError("choices apply to a log opened for building (create=False)")

        if self.writable:
            return ms.database.JSONDatabase(
                path_workload=str(self.workload_file), path_tuning_record=str(self.record_file),
                allow_missing=True, module_equality="structural",
            )
        workloads, records = self._valid or ([], [])
        if with_choices and self.hand_chosen:
            hashes = _workload_keys(workloads)
            records = [line for line in records if hashes[json.loads(line)[0]] not in self.hand_chosen]
        with tempfile.TemporaryDirectory(prefix="shuffletvm-log-") as tmp:
            (Path(tmp) / WORKLOADS).write_text("".join(line + "\n" for line in workloads))
            (Path(tmp) / RECORDS).write_text("".join(line + "\n" for line in records))
            return ms.database.JSONDatabase(
                path_workload=str(Path(tmp) / WORKLOADS), path_tuning_record=str(Path(tmp) / RECORDS),
                allow_missing=False, module_equality="structural",
            )


def _load_choices(path: Path) -> dict[str, dict[str, Any]] | None:
    """in_model.json's choices; None where the file does not parse as one."""
    if not path.exists():
        return {}
    try:
        chosen = json.loads(path.read_text(errors="replace"))["hand_schedule"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(chosen, dict) or not all(isinstance(v, dict) for v in chosen.values()):
        return None
    return chosen


def save_choices(log: TuningLog, hand_chosen: dict[str, dict[str, Any]]) -> None:
    """Write `in_model.json` atomically, one kernel a line; a corrupt one is kept as `in_model.json.rejected`."""
    if log.choices_corrupt and log.choice_file.exists():
        log.choice_file.replace(log.choice_file.with_name(CHOICES + ".rejected"))
    lines = [f"  {json.dumps(workload)}: {json.dumps(choice)}" for workload, choice in sorted(hand_chosen.items())]
    write_text_atomic('{"hand_schedule": {\n' + ",\n".join(lines) + "\n}}\n", log.choice_file)  # a kernel a line
    log.hand_chosen, log.choices_corrupt = dict(hand_chosen), False


def _schedule_key(line: str) -> str | None:
    """A record line's kernel (workload index) and schedule: its trace's instructions and decisions before the
    postprocessors (what `seeds._trace_text` compares), as text; None for a line that does not parse."""
    try:
        workload, (trace, *_rest) = json.loads(line)
        instructions, decisions = trace
        end = next((i for i, inst in enumerate(instructions) if inst[0] == "EnterPostproc"), len(instructions))
        return json.dumps([workload, instructions[:end], [d for d in decisions if d[0] < end]])
    except (json.JSONDecodeError, TypeError, ValueError, IndexError):
        return None


def _manifest(target: ResolvedTarget) -> dict[str, Any]:
    return {"key": target.log_key, "target": target.spec}


def _split_lines(path: Path, valid: Callable[[Any], bool]) -> tuple[list[str], list[str], bool]:
    """(lines `valid` accepts, the others, whether the file ends without a newline)."""
    if not path.exists():
        return [], [], False
    text = path.read_text(errors="replace")
    kept, rejected = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            ok = valid(json.loads(line))
        except (json.JSONDecodeError, TypeError, ValueError, IndexError, KeyError):
            ok = False
        (kept if ok else rejected).append(line)
    return kept, rejected, bool(text) and not text.endswith("\n")


def _rewrite(path: Path, kept: list[str], rejected: list[str]) -> None:
    """Move rejected lines to `path.rejected` (appended) and leave `path` with the kept lines, newline-ended."""
    if rejected:
        with open(path.with_name(path.name + ".rejected"), "a") as f:
            f.write("\n".join(rejected) + "\n")
    write_text_atomic("".join(line + "\n" for line in kept), path)


def _stamped_target(folder: Path) -> ResolvedTarget | None:
    """The preset target a log folder is stamped for (None: unstamped, unreadable, or not an x86/arm preset)."""
    from ..targets import TargetOptions, resolve_target

    try:
        stamp = json.loads((folder / MANIFEST).read_text())
        spec, name = stamp["target"], str(stamp["key"]).split("-")[0]
        if name not in ("x86", "arm"):
            return None
        other = resolve_target(name, TargetOptions(mcpu=spec["mcpu"], num_cores=int(spec["num-cores"])))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, ShuffleTVMError):
        return None
    return other if other.log_key == stamp["key"] else None


def kindred_log(target: ResolvedTarget, root: Path | None = None, any_width: bool = False) -> TuningLog | None:
    """The closest other CPU's log under `root` whose records `target` can use, opened read-only: same preset
    (x86 or arm), same machine, same SIMD width (the layout phase packs by it, so kernels would differ). Closest:
    the same core count first (parallel loops are tiled for it), then the same CPU (`mcpu`: a Zen 4 with 4 cores
    takes the 2-core Zen 4 log, not the Zen 5 one, whose records ran V1 and V2 in 1.06-1.18x the time on a Zen 4),
    then the same vendor (`ResolvedTarget.vendor`: records carry the chip's caches and interconnect), then the most
    records. None if there is none (GPU logs are never shared: a CUDA schedule is tied to its architecture's
    limits).

    `any_width` (seeding a search, never a build): a log of another SIMD width ranks after every log of this
    one. Only the kernels whose TensorIR is the same at both widths find records in it; what they find was
    tuned for other registers, so it only competes, measured here, with the hand schedule and the search."""
    from ..schedules._common import vector_lanes

    if target.name not in ("x86", "arm"):
        return None
    root = Path(root or default_log_root())
    lanes = vector_lanes(target.tvm_target())
    candidates = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        other = _stamped_target(folder)
        if other is None or other.log_key == target.log_key or other.name != target.name or other.arch != target.arch:
            continue
        other_width = vector_lanes(other.tvm_target()) != lanes
        if other_width and not any_width:
            continue
        log = open_log(other, root, create=False)
        if log.records:
            same_cores = other.spec["num-cores"] == target.spec["num-cores"]
            same_cpu = "mcpu" in target.spec and other.spec.get("mcpu") == target.spec["mcpu"]
            same_vendor = target.vendor is not None and other.vendor == target.vendor
            candidates.append(((other_width, not same_cores, not same_cpu, not same_vendor, -log.records), log))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def open_log(target: ResolvedTarget, root: Path | None = None, create: bool = True) -> TuningLog:
    """The tuning log for `target` under `root` (default: `tuning_logs/`), checked. With `create` (tuning) the
    folder is made if missing and cleaned on disk; without (building) nothing on disk changes."""
    path = Path(root or default_log_root()) / target.log_key
    manifest_file = path / MANIFEST
    if path.exists() and not path.is_dir():
        raise ShuffleTVMError(f"tuning log path '{path}' is a file, not a folder")
    rows_ratio = None
    if manifest_file.exists():
        try:
            stamped = json.loads(manifest_file.read_text())
        except json.JSONDecodeError:
            raise ShuffleTVMError(f"'{manifest_file}' is corrupt; remove it if the folder is for {target.log_key}") from None
        stamped = stamped if isinstance(stamped, dict) else {}
        if stamped.get("key") != target.log_key:
            raise ShuffleTVMError(
                f"'{path}' holds records for target '{stamped.get('key')}', not '{target.log_key}'; "
                "use another --log-dir"
            )
        rows_ratio = stamped.get("rows_ratio")
        if rows_ratio is not None and (isinstance(rows_ratio, bool) or not isinstance(rows_ratio, (int, float))
                                       or not rows_ratio > 0):
            raise ShuffleTVMError(f"'{manifest_file}': rows_ratio must be a positive number, not {rows_ratio!r}")
    elif path.exists() and any(path.iterdir()):
        raise ShuffleTVMError(f"'{path}' holds files but no {MANIFEST}: not a shuffletvm tuning log; use another --log-dir")
    log = TuningLog(path, target, writable=create, rows_ratio=rows_ratio)
    chosen = _load_choices(log.choice_file)
    if chosen is None:
        logger.warning("'%s' is corrupt: its choices are ignored (`shuffletvm choose` writes it again)",
                       log.choice_file)
    log.hand_chosen, log.choices_corrupt = chosen or {}, chosen is None
    if not path.exists():
        if not create:
            return log
        try:
            path.mkdir(parents=True)
        except OSError as err:
            raise ShuffleTVMError(f"cannot create tuning log folder '{path}': {err.strerror}") from None
    if create:
        if not os.access(path, os.W_OK | os.X_OK):
            raise ShuffleTVMError(f"tuning log folder '{path}' is not writable; use another --log-dir")
        if not manifest_file.exists():
            write_text_atomic(json.dumps(_manifest(target), indent=2) + "\n", manifest_file)

    workloads, bad_workloads, torn_w = _split_lines(log.workload_file, lambda w: isinstance(w, list) and len(w) == 2)

    def valid_record(r: Any) -> bool:
        return isinstance(r, list) and len(r) == 2 and 0 <= int(r[0]) < len(workloads) and isinstance(r[1], list)

    records, bad_records, torn_r = _split_lines(log.record_file, valid_record)
    log.workloads, log.records, log.rejected = len(workloads), len(records), len(bad_workloads) + len(bad_records)
    if log.writable:
        if bad_workloads or torn_w:
            _rewrite(log.workload_file, workloads, bad_workloads)
        if bad_records or torn_r:
            _rewrite(log.record_file, records, bad_records)
    else:
        log._valid = (workloads, records)
    if log.rejected:
        logger.warning("%s: skipped %d corrupt or truncated line(s)%s", path, log.rejected,
                       ", kept in *.rejected" if log.writable else "")
    return log


@dataclass
class PruneResult:
    records_before: int
    records_after: int
    workloads_before: int
    workloads_after: int


def prune_log(log: TuningLog, keep: int, live: set[int] | None = None,
              restore: tuple[TuningLog, set[int]] | None = None) -> PruneResult:
    """Rewrite `log` with at most `keep` fastest valid records per kernel, and only the kernels whose workload
    structural hash is in `live` (all if None): what a shipped log needs. Builds use only the best record; the
    search seeds its population from the best few. `restore` (another log of the same target, kernels' hashes):
    those kernels' records are the other log's instead (a copy taken before a run whose new records of them were
    slower in the built model); it must have some for each, else nothing changes. The new files are written
    beside the old ones and swapped in with renames, so an interrupted prune leaves the old log."""
    import shutil

    from tvm.s_tir import meta_schedule as ms

    if keep < 1:
        raise ShuffleTVMError(f"keep at least 1 record per kernel, got {keep}")
    source, restored = restore if restore is not None else (None, set())
    by_workload = {key: records for key, records in _records_by_workload(log).items()
                   if (live is None or key in live) and key not in restored}
    if source is not None:
        from_source = _records_by_workload(source)
        missing = restored - from_source.keys()
        if missing:
            raise ShuffleTVMError(f"'{source.path}' has no records of {len(missing)} of the {len(restored)} kernels "
                                  "to restore; nothing changed")
        by_workload.update({key: from_source[key] for key in restored})
    staging = log.path.with_name(log.path.name + ".pruning")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copy2(log.path / MANIFEST, staging / MANIFEST)
    new = ms.database.JSONDatabase(path_workload=str(staging / WORKLOADS), path_tuning_record=str(staging / RECORDS),
                                   allow_missing=True, module_equality="structural")
    kept = 0
    for records in by_workload.values():
        records.sort(key=lambda r: sum(float(s) for s in r.run_secs) / len(r.run_secs))
        workload = new.commit_workload(records[0].workload.mod)
        for record in records[:keep]:
            new.commit_tuning_record(ms.database.TuningRecord(
                trace=record.trace, workload=workload, run_secs=record.run_secs, target=record.target,
                args_info=record.args_info,
            ))
            kept += 1
    result = PruneResult(log.records_now(), kept, log.workloads, len(by_workload))
    retired = log.path.with_name(log.path.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    log.path.rename(retired)
    staging.rename(log.path)
    shutil.rmtree(retired)
    return result


def _records_by_workload(log: TuningLog) -> dict[int, list[Any]]:
    """The log's measured records (not failed builds or runs), by their kernel's structural hash."""
    import tvm_ffi

    by_workload: dict[int, list[Any]] = {}
    for record in log.database().get_all_tuning_records():
        if record.run_secs and all(float(s) < 1e9 for s in record.run_secs):
            by_workload.setdefault(int(tvm_ffi.structural_hash(record.workload.mod)), []).append(record)
    return by_workload

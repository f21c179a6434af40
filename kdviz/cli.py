"""Command line: `python -m kdviz prepare | distill | list`, on the same engine and presets as the app."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A one-line, user-facing error; main() prints it and exits non-zero."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        command = " ".join(self.prog.split()[1:])
        raise CliError(f"{message} (see `python -m kdviz {command + ' ' if command else ''}--help`)")


# ---- progress ---------------------------------------------------------------------------------------------------

class ProgressBar:
    """A one-line progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise (logs, CI)."""

    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.started = time.monotonic()
        self.interactive = self.stream.isatty()
        self.last_draw, self.last_decile = 0.0, -1
        self.done, self.total, self.detail, self.drawn_detail = 0, 1, "", ""

    def update(self, done: int | None = None, total: int | None = None, detail: str | None = None) -> None:
        self.done = self.done if done is None else done
        self.total = self.total if total is None else max(total, 1)
        self.detail = self.detail if detail is None else detail
        fraction = min(self.done / self.total, 1.0)
        now = time.monotonic()
        if self.interactive and now - self.last_draw >= 0.1:
            self.last_draw = now
            self._draw(fraction, "\r")
        elif not self.interactive and int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            self._draw(fraction, "\n")

    def _draw(self, fraction: float, end: str) -> None:
        elapsed = time.monotonic() - self.started
        eta = f"≈{elapsed / fraction - elapsed:.0f}s left" if 0 < fraction < 1 else ""
        bar = "█" * int(fraction * self.width) + "·" * (self.width - int(fraction * self.width))
        line = f"{self.label:<12} {bar} {fraction:4.0%} {elapsed:5.1f}s {eta:<12} {self.detail}"
        self.drawn_detail = self.detail
        print(line.ljust(100), end=end, file=self.stream, flush=True)

    def close(self) -> None:
        if self.interactive:
            self._draw(min(self.done / self.total, 1.0), "\n")
        elif self.last_decile < 10 or self.detail != self.drawn_detail:
            self._draw(1.0, "\n")


def consume(events, label: str):
    """Drive an event stream with a progress bar; return its Finished event; raise CliError on divergence."""
    from kdviz.core.engine import Diverged, EpochEnd, Finished, Notice, Started, StepLosses

    bar, finished = ProgressBar(label), None
    for event in events:
        if isinstance(event, Started):
            bar.update(0, event.total_steps)
        elif isinstance(event, StepLosses):
            bar.update(event.step)
        elif isinstance(event, EpochEnd) and event.epoch > 0:
            shown = {k: v for k, v in event.accuracy.items() if k != "teacher" or len(event.accuracy) == 1}
            bar.update(detail=f"epoch {event.epoch}: " + " ".join(f"{k} {v:.1%}" for k, v in shown.items()))
        elif isinstance(event, Notice):
            print(f"note: {event.message}", file=sys.stderr)
        elif isinstance(event, Diverged):
            if bar.interactive:
                print(file=sys.stderr)
            raise CliError(f"{label}: {event.message}", EXIT_FAILED)
        elif isinstance(event, Finished):
            finished = event
    if finished.summary.get("cached"):
        print(f"{label:<12} cached ({finished.summary['teacher']['accuracy']:.2%} test accuracy)", file=sys.stderr)
    else:
        bar.close()
    return finished


# ---- commands ---------------------------------------------------------------------------------------------------

def cmd_prepare(args) -> int:
    from kdviz.core.engine import resolve_device
    from kdviz.core.models import ModelSpec
    from kdviz.core.presets import teachers_to_prepare
    from kdviz.core.teachers import prepare_teacher, teacher_path

    resolve_device(args.device)
    for config in teachers_to_prepare(args.presets or None):
        from kdviz.core.data import load_dataset

        dataset = load_dataset(config.dataset)
        name = ModelSpec.describe(config.model, dataset.input_shape, dataset.num_classes)
        finished = consume(prepare_teacher(config, args.device), f"teacher {config.dataset}")
        if finished.status != "completed":
            raise CliError(f"training the {config.dataset} teacher ended: {finished.status}", EXIT_FAILED)
        facts = finished.summary["teacher"]
        print(f"{config.dataset}: {name}, {facts['val_accuracy']:.2%} validation / {facts['accuracy']:.2%} test "
              f"accuracy, {facts['params']:,} parameters → {teacher_path(config, args.device)}")
    return 0


def yes_no(text: str) -> bool:
    """An argparse type for a yes/no flag value (yes, no, true, false, 1, 0)."""
    value = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"give yes or no, got {text!r}")
    return value


OVERRIDES = [  # (flag, config field, type, help): every engine option is settable and overrides the preset
    ("--dataset", "teacher_dataset", str, "dataset name (see `python -m kdviz list`)"),
    ("--teacher", "teacher_arch", str, "teacher architecture"),
    ("--teacher-width", "teacher_width", int, "teacher width"),
    ("--teacher-depth", "teacher_depth", int, "teacher depth"),
    ("--teacher-epochs", "teacher_epochs", int, "teacher training epochs"),
    ("--teacher-augment", "teacher_augment", int, "teacher jitter in pixels"),
    ("--teacher-dropout", "teacher_dropout", float, "teacher dropout probability, in [0, 1)"),
    ("--teacher-label-smoothing", "teacher_label_smoothing", float,
     "label smoothing ε of the teacher's hard labels, in [0, 1) (default 0)"),
    ("--student", "student_arch", str, "student architecture"),
    ("--student-width", "student_width", int, "student width"),
    ("--student-depth", "student_depth", int, "student depth"),
    ("--student-dropout", "student_dropout", float, "student dropout probability, in [0, 1)"),
    ("--temperature", "temperature", float, "distillation temperature T > 0"),
    ("--alpha", "alpha", float, "weight of the soft (KD) term, in [0, 1]"),
    ("--epochs", "epochs", int, "student training epochs"),
    ("--batch-size", "batch_size", int, "student batch size"),
    ("--lr", "learning_rate", float, "student learning rate (Adam)"),
    ("--weight-decay", "weight_decay", float, "students' AdamW weight decay, >= 0 with lr × wd < 1"),
    ("--augment", "augment", int, "student jitter in pixels (0: off; then teacher logits are cached)"),
    ("--train-subset", "train_subset", int, "train the students on this many images (0: all)"),
    ("--consistent-teacher", "consistent_teacher", yes_no, "with --augment: yes (default), the teacher labels the "
     "student's own jittered view every batch; no, its logits are computed once on the unjittered images (a fixed "
     "teacher)"),
    ("--device", "device", str, "auto, cpu, cuda or mps"),
    ("--mistake", "mistake", str, "train a third student with a common KD mistake beside the two (distill only): "
                                  "mean-reduction, no-t-squared, naive-kl, reverse-kl, teacher-train-mode, "
                                  "alpha-swapped (docs/MISTAKES.md)"),
]


def build_config(args, base=None):
    """The preset's DistillConfig (or base, when no preset is given) with every flag the user gave applied on top."""
    from kdviz.core.engine import check_config
    from kdviz.core.presets import get_preset, with_overrides

    config = get_preset(args.preset) if args.preset or base is None else base
    given = {field: getattr(args, field) for _, field, _, _ in OVERRIDES if getattr(args, field) is not None}
    for role, current in (("teacher", config.teacher.model), ("student", config.student)):
        spec = {knob: given.pop(f"{role}_{knob}") for knob in ("arch", "width", "depth", "dropout")
                if f"{role}_{knob}" in given}
        if spec:
            given["teacher_model" if role == "teacher" else "student"] = dataclasses.replace(current, **spec)
    return check_config(with_overrides(config, **given))


def check_server_budget(config, seeds: list[int]) -> float | None:
    """Refuse (OverBudget, a ValueError: one line) a run over this server's per-run budget; return its wall-clock
    limit. Only the first seed may have to train the teacher: the later ones find it cached."""
    from kdviz.core.budget import check_budget
    from kdviz.runs.settings import server_settings
    from kdviz.core.teachers import is_cached

    budget = server_settings().budget
    cached = is_cached(config.teacher, config.device)
    for index, seed in enumerate(seeds):
        check_budget(dataclasses.replace(config, seed=seed), budget, teacher_cached=cached or index > 0)
    return budget.max_seconds


def deadline(seconds: float | None):
    """A should_stop that turns true `seconds` from now (None: never stops)."""
    if seconds is None:
        return None
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end


def cmd_distill(args) -> int:
    """One process, or one rank of `torchrun ... -m kdviz distill` (RANK / WORLD_SIZE / LOCAL_RANK set)."""
    from kdviz.core import distributed

    shard = distributed.from_environment()
    if shard is None:
        return _distill(args, build_config(args))
    return _distill_rank(args, shard)


def _distill_rank(args, shard) -> int:
    """One rank of a data-parallel distillation: the same engine under DDP; only rank 0 prints and writes files.

    Rank 0 prepares the teacher (the cache, or trains it alone: it is trained once and cached under the identity of a
    single-process training) and broadcasts its weights, so no rank needs rank 0's disk. Other ranks run silently;
    an error they share with rank 0 (a bad flag, divergence) is left to rank 0 to say."""
    import os

    from kdviz.core import distributed
    from kdviz.core.engine import resolve_device

    try:
        with contextlib.ExitStack() as quiet:
            if not shard.is_main:
                sink = quiet.enter_context(open(os.devnull, "w"))
                quiet.enter_context(contextlib.redirect_stdout(sink))
                quiet.enter_context(contextlib.redirect_stderr(sink))
            config = build_config(args)
            with distributed.process_group(shard, resolve_device(config.device)):
                return _distill(args, config, shard)
    except (CliError, ValueError) as error:
        if shard.is_main:
            raise
        return error.code if isinstance(error, CliError) else EXIT_BAD_INPUT


def _shared_teacher(config, shard, stop):
    """(rank 0's teacher preparation or None, the teacher) on every rank of a data-parallel run.

    Only rank 0 prepares it (and writes the cache); it then sends the weights, and the other ranks build the model
    and receive them. Ranks learn together whether rank 0 succeeded, so none waits for a teacher that will not come."""
    from kdviz.core.data import load_dataset
    from kdviz.core.engine import resolve_device
    from kdviz.core.models import create_model
    from kdviz.core.teachers import prepare_teacher

    device = resolve_device(config.device)
    if shard.local_rank == 0:  # one process per machine fetches a dataset that needs a download
        load_dataset(config.dataset)
    shard.barrier()
    finished, failure = None, None
    if shard.is_main:
        try:
            finished = consume(prepare_teacher(config.teacher, config.device, stop), "teacher")
        except Exception as error:  # noqa: BLE001 — raised once the other ranks know
            failure = error
    if not shard.any(finished is not None and finished.status == "completed", device):
        if failure is not None:
            raise failure
        if finished is not None:
            return finished, None  # cancelled: _check_teacher says why
        raise CliError("rank 0 could not prepare the teacher (its message says why)", EXIT_FAILED)
    if shard.is_main:
        teacher = finished.models["teacher"]
    else:
        dataset = load_dataset(config.dataset)
        teacher = create_model(config.teacher.model, dataset.input_shape, dataset.num_classes).eval()
    return finished, shard.broadcast_module(teacher, device)


def _check_teacher(finished, max_seconds) -> None:
    if finished is not None and finished.status == "cancelled":
        raise CliError(f"the teacher's training reached this server's wall-clock limit ({max_seconds:g} s a run) "
                       "and stopped; cache it first (`python -m kdviz prepare`) or choose a smaller one", EXIT_FAILED)


def _distill(args, config, shard=None) -> int:
    from kdviz.core.data import load_dataset
    from kdviz.core.distributed import SINGLE
    from kdviz.core.engine import distill, student_roles
    from kdviz.core.results import seed_summary
    from kdviz.core.teachers import prepare_teacher

    shard = shard or SINGLE
    seeds = args.seeds if args.seeds else [config.seed]
    max_seconds = check_server_budget(config, seeds) if args.budget else None
    stop = deadline(max_seconds)  # a run is the teacher's preparation and the first seed, as in the app
    if shard.single:
        teacher_finished = consume(prepare_teacher(config.teacher, config.device, stop), "teacher")
        _check_teacher(teacher_finished, max_seconds)
        teacher = teacher_finished.models["teacher"]
    else:
        teacher_finished, teacher = _shared_teacher(config, shard, stop)
        _check_teacher(teacher_finished, max_seconds)
    split = load_dataset(config.dataset).split
    runs = []
    for index, seed in enumerate(seeds):
        events = distill(dataclasses.replace(config, seed=seed), teacher, stop if index == 0 else deadline(max_seconds),
                         shard=shard)
        with contextlib.closing(events):  # a stream left open on an error would hold DDP past its process group
            finished = consume(events, f"seed {seed}")
        if finished.status == "cancelled":
            print(f"note: seed {seed} reached this server's wall-clock limit ({max_seconds:g} s a run) and stopped "
                  f"after {finished.summary['steps']:,} steps; its numbers are what it measured by then",
                  file=sys.stderr)
        runs.append({"seed": seed, "status": finished.status,
                     **{role: finished.summary[role] for role in student_roles(config)},
                     "seconds": finished.summary["seconds"], "device": finished.summary["device"],
                     "threads": finished.summary["threads"]})
        if not shard.single:
            runs[-1]["world_size"] = shard.world_size
    if not shard.is_main:
        return 0
    result = {"config": {**dataclasses.asdict(config), "seeds": seeds, "split": split},
              "teacher": teacher_finished.summary["teacher"], "runs": runs,
              "summary": seed_summary(runs, split["test"], split["validation"], student_roles(config))}
    print(format_case_study(result, args.preset))
    if args.json:
        from kdviz.core.paths import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def format_case_study(result: dict, preset: str) -> str:
    """The lecture's case-study table: teacher / hard-label student / KD student, validation beside test."""
    from kdviz.core.results import case_rows, mistake_sentence, verdict

    summary, runs = result["summary"], result["runs"]
    n_test, n_val, n = summary["n_test"], summary["n_val"], summary["n_seeds"]
    spread = (lambda std: f" ± {std:.2%}") if n > 1 else (lambda std: "")
    header = (f"{'model':<20}{'parameters':>12}{'size (MB)':>11}{f'val accuracy ({n_val})':>24}"
              f"{f'test accuracy ({n_test})':>24}{f'test errors / {n_test}':>20}{'agrees with T':>15}"
              f"{'KL(T‖S)':>9}")
    where = f"{runs[0]['device']}, {runs[0].get('threads', '?')} thread{'s' * (runs[0].get('threads') != 1)}"
    lines = [f"preset {preset}, {n} seed{'s' * (n > 1)}: {', '.join(str(r['seed']) for r in runs)} ({where})", header,
             "-" * len(header)]
    for row in case_rows(result["teacher"], runs[0]["hard"], summary):
        errors = f"{row['errors']:g}" if row["role"] == "teacher" or n == 1 else f"{row['errors']:.1f}"
        val = f"{row['val_accuracy']:.2%}{spread(row['val_std']) if row['role'] != 'teacher' else ''}"
        test = f"{row['accuracy']:.2%}{spread(row['std']) if row['role'] != 'teacher' else ''}"
        agree = "" if row["agreement"] is None else f"{row['agreement']:.2%}"
        kl = "" if row["kl_to_teacher"] is None else f"{row['kl_to_teacher']:.3f}"
        lines.append(f"{row['name']:<20}{row['params']:>12,}{row['size_bytes'] / 1e6:>11.2f}{val:>24}{test:>24}"
                     f"{errors:>20}{agree:>15}{kl:>9}")
    if n > 1:
        lines.append("per seed, test (hard → KD): " + "; ".join(
            f"{r['seed']}: {r['hard']['accuracy']:.2%} → {r['kd']['accuracy']:.2%}" for r in runs))
    mistake = result["config"].get("mistake", "none")
    if mistake != "none":
        lines.append(mistake_sentence(summary, mistake))
    smaller = result["teacher"]["params"] / runs[0]["hard"]["params"]
    lines.append(f"{verdict(summary)[1]} The student is {smaller:.1f}× smaller than the teacher. Validation "
                 f"(KD − hard: {100 * (summary['kd_val_mean'] - summary['hard_val_mean']):+.2f} points) is what "
                 "presets are chosen by; test is only reported.")
    return "\n".join(lines)


def cmd_experiment(args) -> int:
    """`python -m kdviz experiment NAME`: the experiment over the given seeds, its table, and --json."""
    from kdviz import experiments
    from kdviz.core.flags import given_flags
    from kdviz.core.teachers import prepare_teacher

    module = experiments.experiment(args.name)
    if args.mistake is not None:
        raise CliError("--mistake is an option of `python -m kdviz distill`, not of the experiments")
    base = module.default_config()
    overridden = args.preset or any(getattr(args, field) is not None for _, field, _, _ in OVERRIDES)
    config = experiments.config_from_flags(module, given_flags(args, type(base)),
                                           build_config(args, base.distill) if overridden else None, args.device)
    seeds = args.seeds if args.seeds else [config.distill.seed]
    configs = [dataclasses.replace(config, distill=dataclasses.replace(config.distill, seed=seed)) for seed in seeds]
    max_seconds = None
    if args.budget:
        from kdviz.runs.settings import server_settings
        from kdviz.core.teachers import is_cached

        budget = server_settings().budget
        cached = is_cached(config.distill.teacher, config.distill.device)
        for index, each in enumerate(configs):
            experiments.check_budget(each, budget, cached or index > 0)
        max_seconds = budget.max_seconds
    stop = deadline(max_seconds)
    teacher = consume(prepare_teacher(config.distill.teacher, config.distill.device, stop), "teacher")
    if teacher.status != "completed":
        raise CliError(f"the teacher's preparation ended: {teacher.status}", EXIT_FAILED)
    runs = []
    for index, each in enumerate(configs):
        stops = stop if index == 0 else deadline(max_seconds)
        finished = consume_experiment(module.run(each, teacher.models["teacher"], stops), f"seed {each.distill.seed}")
        if finished.status != "completed":
            print(f"note: seed {each.distill.seed} ended {finished.status}; its numbers are what it measured by then",
                  file=sys.stderr)
        runs.append({"seed": each.distill.seed, "status": finished.status, **finished.summary})
    result = {**module.report(config, runs), "config": {**experiments.to_record(config), "seeds": seeds}}
    print(module.format_text(result))
    if args.json:
        from kdviz.core.paths import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def consume_experiment(events, label: str):
    """An experiment's stream with a progress bar over its measured points; its last Finished event."""
    from kdviz.core.engine import Diverged, EpochEnd, Finished, Notice
    from kdviz.experiments.events import Measured

    bar, finished = ProgressBar(label), None
    for event in events:
        if isinstance(event, Measured):
            bar.update(event.done, event.total)
        elif isinstance(event, EpochEnd) and event.epoch > 0:
            bar.update(detail=f"training, epoch {event.epoch}")
        elif isinstance(event, Notice):
            print(f"note: {event.message}", file=sys.stderr)
        elif isinstance(event, Diverged):
            print(f"note: {event.message}", file=sys.stderr)
        elif isinstance(event, Finished):
            finished = event
    bar.close()
    return finished


def cmd_list(args) -> int:
    from kdviz.core.data import list_datasets
    from kdviz.core.models import list_models
    from kdviz.core.presets import PRESETS

    print("datasets:")
    for info in list_datasets():
        print(f"  {info.name:<16} {info.description}")
    print("models:")
    for info in list_models():
        print(f"  {info.name:<16} {info.description}")
    print("presets:")
    for name, (description, _) in PRESETS.items():
        print(f"  {name:<16} {description}")
    from kdviz.experiments import EXPERIMENTS

    print("experiments (python -m kdviz experiment NAME --help):")
    for name, (_, description) in EXPERIMENTS.items():
        print(f"  {name:<18} {description}")
    return 0


def cmd_settings(args) -> int:
    """This server's settings, where each came from, and the worst cases they allow (memory, disk)."""
    from kdviz.core.budget import format_bytes
    from kdviz.core.settings import setting_values, settings_file
    from kdviz.runs.settings import server_settings

    values = setting_values()
    print(f"server settings (environment KDVIZ_*, then {settings_file()} [server], then the defaults):")
    for name, (value, source) in values.items():
        shown = "none" if value is None else value if value != "" else '""'
        print(f"  {name:<28} {str(shown):<12} {source}")
    settings = server_settings()
    peak = settings.peak_memory_bytes()
    print("worst cases:")
    print(f"  runs in memory: (workers {settings.workers} + paused {settings.max_paused}) x max_run_memory_mb = "
          + ("unlimited (max_run_memory_mb is none)" if peak is None else format_bytes(peak))
          + ("" if settings.server_memory_mb is None else f"; pauses past server_memory_mb "
             f"{format_bytes(settings.server_memory_mb * 2**20)} are refused"))
    disk, per_browser = (("unlimited" if size is None else format_bytes(size))
                         for size in (settings.max_disk_bytes, settings.max_disk_per_browser_bytes))
    print(f"  disk: {disk} for the runs and the teacher cache, {per_browser} per browser (the oldest finished runs "
          "make room)")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdviz", description="Knowledge distillation (Hinton et al. 2015) from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    prepare = commands.add_parser("prepare", help="train and cache the offline presets' teachers")
    prepare.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    prepare.add_argument("--preset", dest="presets", nargs="+", metavar="NAME",
                         help="prepare these presets' teachers (default: the offline presets' but fashion's, which "
                              "takes minutes on a CPU: `prepare --preset fashion`)")
    prepare.set_defaults(run=cmd_prepare)
    run = commands.add_parser("distill", help="train hard-label and KD students side by side; print the table")
    run.add_argument("--preset", default="lecture",
                     help="a preset of `python -m kdviz list` (lecture, quick, fashion, cifar10-lecture, or a swept "
                          "one's tuned baseline: lecture-baseline, quick-baseline, fashion-baseline); flags override "
                          "it")
    run.add_argument("--seeds", "--seed", type=int, nargs="+", help="one or more seeds (default: the preset's)")
    run.add_argument("--json", help="also write the results as JSON to this path")
    run.add_argument("--budget", action="store_true",
                     help="apply this server's per-run budget (KDVIZ_MAX_RUN_* / KDVIZ_HOME/server.toml): refuse a "
                          "run over it, stop one at its wall-clock limit; the CLI is unlimited without it")
    for flag, field, kind, text in OVERRIDES:
        run.add_argument(flag, dest=field, type=kind, default=None, help=text)
    run.set_defaults(run=cmd_distill)
    experiment = commands.add_parser("experiment", help="why distillation works, as experiments: gradient-variance, "
                                                        "missing-class, capacity, ensemble, compression")
    names = experiment.add_subparsers(dest="name", required=True, parser_class=_Parser)
    from kdviz.core.flags import add_flags
    from kdviz.experiments import EXPERIMENTS, experiment as experiment_module

    for name, (_, description) in EXPERIMENTS.items():
        try:
            module = experiment_module(name)
        except ImportError:  # an experiment not built yet
            continue
        one = names.add_parser(name, help=description, description=(module.__doc__ or "").split("\n\n")[0])
        one.add_argument("--preset", default=None, help="base the experiment's students on this preset (default: "
                                                        "the experiment's own offline default); flags override it")
        one.add_argument("--seeds", "--seed", type=int, nargs="+", help="one or more seeds (default: the config's)")
        one.add_argument("--json", help="also write the results as JSON to this path")
        one.add_argument("--budget", action="store_true", help="apply this server's per-run budget (see distill)")
        for flag, field, kind, text in OVERRIDES:
            one.add_argument(flag, dest=field, type=kind, default=None, help=text)
        add_flags(one, module.default_config())  # the experiment's own flags, declared on its config's fields
        one.set_defaults(run=cmd_experiment)
    settings = commands.add_parser("settings", help="this server's settings, where each came from, and the worst "
                                                    "case memory and disk they allow")
    settings.set_defaults(run=cmd_settings)
    listing = commands.add_parser("list", help="list datasets, models, presets and experiments")
    listing.set_defaults(run=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        return args.run(args)
    except CliError as error:
        print(f"kdviz: error: {error}", file=sys.stderr)
        return error.code
    except ValueError as error:  # the library's validation: the message names the bad value
        print(f"kdviz: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\nkdviz: stopped", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 — a CLI user gets one line, never a traceback
        print(f"kdviz: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED

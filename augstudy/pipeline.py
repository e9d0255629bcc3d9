"""`augstudy run CONFIG.toml` and `augstudy demo`: the whole study from one experiment file.

Each TOML section holds the options of one step, by the field names of that step's options
dataclass, so a config is exactly the set of command-line flags the steps would get. Relative
paths are relative to the config file. Every step is itself resumable and skips finished work;
the pipeline adds a `study_state.json` so a finished step whose options have not changed is not
even re-entered, and a changed step re-runs along with everything after it.

A `[train_diffusion]` section adds a second generator (augstudy.diffusion) beside the GAN: it trains
on the same prepared data, samples its own pool (`[generate_diffusion]`) and the sweep's diffusion
arms read that pool, so both generators meet the same seeds and test draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import click

from augstudy.locks import writing
from augstudy.options import OptionError, check_types, options_to_dict
from augstudy.outputs import OutputError, OutputPath, check_output
from stylegan2ada.io import atomic_write_json

STEPS = ("phantom", "prepare", "audit", "train_gan", "generate", "train_diffusion", "generate_diffusion", "metrics",
         "sweep", "report")
SECTIONS = ("study", *STEPS[:-1])
STATE_FILE = "study_state.json"
DEMO_CONFIG = "demo.toml"


class ConfigError(ValueError):
    """A study config that cannot be run; the message names the file, the section and the key."""


@dataclass(frozen=True)
class GeneratorLayout:
    """A generator's config sections (= its steps) and its folders in the study."""

    train: str
    generate: str
    runs: str
    pool: str


GENERATOR_LAYOUT = {"gan": GeneratorLayout("train_gan", "generate", "runs", "pool"),
                    "diffusion": GeneratorLayout("train_diffusion", "generate_diffusion", "runs-diffusion",
                                                 "pool-diffusion")}
# The sweep arms that read the diffusion pool: a config with one of them needs [train_diffusion], and back.
DIFFUSION_ARMS = ("diffusion", "diffusion-only")


@dataclass
class StudyConfig:
    """A parsed experiment file. `sections` maps a step to its raw options (paths already resolved)."""

    path: Path
    name: str
    source: str
    out: Path
    description: str = ""
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    generators: tuple[str, ...] = ("gan",)  # "diffusion" too when the config has a [train_diffusion] section
    builtin_demo: bool = False  # the config `augstudy demo` runs (its report says `augstudy demo` to re-run it)


def load_config(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                source: str | None = None) -> StudyConfig:
    """Read and check a study TOML; `out` and `source` override its `[study]` values."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: no such config file") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from error
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; sections are {list(SECTIONS)}")
    study = dict(raw.get("study", {}))
    for key in ("name", "source"):
        if key not in study:
            raise ConfigError(f"{path}: [study] needs '{key}'")
    base = path.parent
    out_path = Path(out) if out is not None else _resolve(base, study.get("out", f"runs/{study['name']}"))
    if source is not None:
        source = source if source == "phantom" or source.startswith("kaggle:") else str(Path(source).resolve())
    else:
        source = str(study["source"])
        if source != "phantom" and not source.startswith("kaggle:"):
            source = str(_resolve(base, source))
    if source != "phantom" and not source.startswith("kaggle:") and not Path(source).is_dir():
        raise ConfigError(f"{path}: [study] source = {source!r} is not a folder (nor phantom or kaggle:OWNER/SLUG)")
    sections = {name: dict(raw.get(name, {})) for name in STEPS[:-1]}
    if source != "phantom" and raw.get("phantom"):
        raise ConfigError(f"{path}: [phantom] is given but the source is {source!r}, not 'phantom'")
    extra = sorted(set(study) - {"name", "source", "out", "description"})
    if extra:
        raise ConfigError(f"{path}: unknown key(s) {extra} in [study]; keys are name, source, out, description")
    wrong = [key for key, value in study.items() if not isinstance(value, str)]
    if wrong:
        raise ConfigError(f"{path}: [study] {wrong[0]} = {study[wrong[0]]!r}: expected a string")
    _check_extra_keys(path, sections)
    generators = ("gan", "diffusion") if "train_diffusion" in raw else ("gan",)
    _check_generators(path, raw, sections)
    config = StudyConfig(path, str(study["name"]), source, out_path, str(study.get("description", "")), sections,
                         generators, path.resolve() == demo_config_path().resolve())
    for step in STEPS[:-1]:
        _step_options(config, step)  # fail on a bad key before any work starts
    return config


def _check_extra_keys(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    """The keys a section holds besides its options' fields (`_EXTRA_KEYS`), by type."""
    splits = sections["sweep"].get("splits")
    if splits is not None and (not isinstance(splits, list) or not all(isinstance(item, str) for item in splits)):
        raise ConfigError(f"{path}: [sweep] splits = {splits!r}: expected a list of split names, e.g. "
                          f'["official", "dedup"]')
    if sections["sweep"].get("design") == "cv" and splits is not None and len(splits) > 1:
        raise ConfigError(f"{path}: [sweep] splits = {splits!r} with design = \"cv\": the cv design pools the "
                          "images of one split mode; give one (e.g. split = \"dedup\") and drop splits")
    from augstudy.classify.sensitivity import SensitivityError, parse_spec
    try:
        parse_spec(sections["sweep"].get("sensitivity"), sections["sweep"].get("schedule", "plateau"))
    except SensitivityError as error:
        raise ConfigError(f"{path}: [sweep] sensitivity: {error}") from error
    enabled = sections["metrics"].get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{path}: [metrics] enabled = {enabled!r}: expected true or false")


def _check_generators(path: Path, raw: dict[str, Any], sections: dict[str, dict[str, Any]]) -> None:
    """A diffusion model is trained exactly when an arm reads its pool: either half alone would train a
    model nobody uses, or run an arm without images."""
    arms = sections["sweep"].get("arms", ["gan"])
    reading = [arm for arm in arms if arm in DIFFUSION_ARMS] if isinstance(arms, list) else []
    if "train_diffusion" in raw and not reading:
        raise ConfigError(f"{path}: [train_diffusion] is given but no [sweep] arm reads its pool; add \"diffusion\" "
                          "(and/or \"diffusion-only\") to [sweep] arms, or drop [train_diffusion]")
    if reading and "train_diffusion" not in raw:
        raise ConfigError(f"{path}: [sweep] arms {reading} read a diffusion pool; add a [train_diffusion] section "
                          "(e.g. cfg = \"cpu\", kimg = 2) so the study trains one")
    if "generate_diffusion" in raw and "train_diffusion" not in raw:
        raise ConfigError(f"{path}: [generate_diffusion] is given without [train_diffusion]: there is no diffusion "
                          "model to sample")


def _resolve(base: Path, value: str | os.PathLike[str]) -> Path:
    value = Path(value).expanduser()
    return value if value.is_absolute() else (base / value).resolve()


# The options dataclass of each step, imported only when a config uses it.
_OPTIONS_CLASSES = {
    "phantom": ("augstudy.data.phantom", "PhantomOptions"),
    "prepare": ("augstudy.data.prepare", "PrepareOptions"),
    "audit": ("augstudy.audit.run", "AuditOptions"),
    "train_gan": ("augstudy.gan.train", "TrainGanOptions"),
    "generate": ("augstudy.gan.generate", "GenerateOptions"),
    "train_diffusion": ("augstudy.diffusion.train", "TrainDiffusionOptions"),
    "generate_diffusion": ("augstudy.gan.generate", "GenerateOptions"),
    "metrics": ("augstudy.metrics.evaluate", "GanMetricsOptions"),
    "sweep": ("augstudy.classify.sweep", "SweepOptions"),
}


def _options_class(step: str) -> type:
    module, name = _OPTIONS_CLASSES[step]
    return getattr(importlib.import_module(module), name)


# Fields the pipeline fills from the study layout; a config may not set them.
_WIRED = {
    "phantom": {"out"},
    "prepare": {"source", "out"},
    "audit": {"data", "pool", "out"},
    "train_gan": {"data", "out"},
    "generate": {"networks", "out"},
    "train_diffusion": {"data", "out"},
    "generate_diffusion": {"networks", "out"},
    "metrics": {"real", "fake", "out"},
    "sweep": {"data", "pool", "diffusion_pool", "out", "audit"},
}
# Keys a section may hold besides its options' fields.
_EXTRA_KEYS = {"sweep": {"splits", "sensitivity"}, "metrics": {"enabled"}, "audit": {"enabled"}}
# Keys holding paths, relative to the config file; the inputs among them must exist.
_PATH_KEYS = ("resume_from", "inception", "cache_dir", "weights")
_INPUT_PATH_KEYS = ("resume_from", "inception", "weights")
_WEIGHTS_WORDS = ("imagenet", "none", "auto")
# Where each step's command keeps the tuple of exceptions it reports as user errors (no traceback).
_USER_ERRORS = {
    "phantom": ("augstudy.data.phantom", "USER_ERRORS"),
    "prepare": ("augstudy.data.prepare", "USER_ERRORS"),
    "audit": ("augstudy.audit.run", "USER_ERRORS"),
    "train_gan": ("augstudy.gan.train", "USER_ERRORS"),
    "metrics": ("augstudy.metrics.cli", "USER_ERRORS"),
    "sweep": ("augstudy.classify.sweep", "USER_ERRORS"),
    "sensitivity": ("augstudy.classify.sweep", "USER_ERRORS"),
}


def _step_options(config: StudyConfig, step: str, **wired: Any) -> Any:
    """Build a step's options dataclass from its section plus the paths the pipeline wires in."""
    cls = _options_class(step)
    fields = {item.name: item for item in dataclasses.fields(cls)}
    section = {key: value for key, value in config.sections[step].items() if key not in _EXTRA_KEYS.get(step, ())}
    bad = sorted(set(section) - (set(fields) - _WIRED[step]))
    if bad:
        allowed = sorted(set(fields) - _WIRED[step]) + sorted(_EXTRA_KEYS.get(step, ()))
        raise ConfigError(f"{config.path}: unknown key(s) {bad} in [{step}]; allowed: {', '.join(allowed)}")
    wrong = check_types(cls, section)
    if wrong:
        raise ConfigError(f"{config.path}: [{step}] {wrong}")
    values: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, list):
            value = tuple(value)
        if key in _PATH_KEYS and isinstance(value, str) and (key != "weights" or value not in _WEIGHTS_WORDS):
            value = _resolve(config.path.parent, value)
            if key in _INPUT_PATH_KEYS and not value.exists():
                raise ConfigError(f"{config.path}: [{step}] {key} = {section[key]!r}: {value} does not exist")
            if key == "weights":  # a word or a path, kept as text like the --weights flag
                value = str(value)
        if key == "group_by" and isinstance(value, str) and value.startswith("csv:"):  # csv:PATH:COLUMN
            table, _, column = value[len("csv:"):].rpartition(":")
            value = f"csv:{_resolve(config.path.parent, table)}:{column}"
        values[key] = value
    values.update(wired)
    missing = [name for name, item in fields.items() if name not in values
               and item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING]
    for name in missing:  # placeholders, only to validate the section before the paths exist
        values[name] = Path(".")
    try:
        return cls(**values)
    except OptionError as error:
        raise ConfigError(f"{config.path}: [{step}] {error.in_config()}") from error
    except TypeError as error:
        raise ConfigError(f"{config.path}: [{step}] {error}") from error


def _fingerprint(options: Any, inputs: Any = None) -> str:
    """Of a step's options and, when given, of what it reads that its options do not name."""
    payload = options_to_dict(options) if inputs is None else {"options": options_to_dict(options), "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _source_listing(source: str) -> list[tuple[str, int, int]] | None:
    """Every file of a local source folder with its size and mtime: changed images re-run prepare
    (and so every step after it) instead of leaving the study on the old ones."""
    root = Path(source)
    if not root.is_dir():
        return None
    return [(path.relative_to(root).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(root.rglob("*")) if path.is_file()]


class Study:
    """Runs the steps of one config in order, recording each finished step in study_state.json."""

    def __init__(self, config: StudyConfig, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = config.out
        self.log = log
        self.state_path = self.out / STATE_FILE
        self.state: dict[str, Any] = self._read_state()
        self.invalidated = False

    @property
    def prepared(self) -> Path:
        return self.out / "prepared"

    @property
    def audit(self) -> Path:
        return self.out / "audit"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    @property
    def pool(self) -> Path:
        return self.pool_of("gan")

    def layout(self, generator: str) -> GeneratorLayout:
        return GENERATOR_LAYOUT[generator]

    def pool_of(self, generator: str) -> Path:
        """The pool folder of one of the config's generators (the cv design's: a folder per fold)."""
        return self.out / self.layout(generator).pool

    def runs_of(self, generator: str) -> Path:
        return self.out / self.layout(generator).runs

    @property
    def sample_pool(self) -> Path:
        """The GAN pool the checks and the report look at: in the cv design, the first fold's first GAN's."""
        return self.sample_pool_of("gan")

    def sample_pool_of(self, generator: str) -> Path:
        """A generator's pool the checks and the report look at (cv: its first fold's first seed's)."""
        if self.config.sections["sweep"].get("design") == "cv":
            from augstudy.classify.data import cv_pool_dir
            return cv_pool_dir(self.pool_of(generator), "r0-f0", 0, generator)
        return self.pool_of(generator)

    @property
    def source(self) -> str:
        return str(self.out / "phantom") if self.config.source == "phantom" else self.config.source

    def options(self, step: str, **wired: Any) -> Any:
        """A step's options: its config section plus the study's folder layout."""
        layout: dict[str, dict[str, Any]] = {
            "phantom": {"out": self.out / "phantom"},
            "prepare": {"source": self.source, "out": self.prepared},
            "audit": {"data": self.prepared, "pool": None, "out": self.audit},
            "train_gan": {"data": self.prepared, "out": self.runs},
            "generate": {"out": self.pool, "networks": ()},
            "train_diffusion": {"data": self.prepared, "out": self.runs_of("diffusion")},
            "generate_diffusion": {"out": self.pool_of("diffusion"), "networks": (), **self._diffusion_pool_size()},
            "metrics": {"real": self.prepared, "fake": self.pool, "out": self.pool / "metrics.json"},
            "sweep": {"data": self.prepared, "pool": self.pool, "out": self.out / "results",
                      "diffusion_pool": self.pool_of("diffusion") if "diffusion" in self.config.generators else None,
                      "audit": self.audit / "audit.json"
                      if self.config.sections["audit"].get("enabled", True) else None},
        }
        return _step_options(self.config, step, **(layout[step] | wired))

    def _diffusion_pool_size(self) -> dict[str, Any]:
        """[generate_diffusion] without per_class or seeds makes as many images per class as [generate]: the
        two pools then offer the sweep the same number of images."""
        section = self.config.sections["generate_diffusion"]
        if "per_class" in section or "seeds" in section:
            return {}
        generate = self.config.sections["generate"]
        return {key: generate[key] for key in ("per_class", "seeds") if key in generate}

    def _read_state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {"steps": {}}
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {"steps": {}}

    def run_step(self, step: str, options: Any, action: Callable[[], Any], inputs: Any = None) -> Any:
        """Run one step unless study_state.json records it done with the same options and inputs."""
        return self._run_step(step, options, action, inputs)

    def _run_step(self, step: str, options: Any, action: Callable[[], Any], inputs: Any = None) -> Any:
        fingerprint = _fingerprint(options, inputs)
        record = self.state["steps"].get(step)
        if not self.invalidated and record and record.get("fingerprint") == fingerprint:
            self.log(f"== {step}: done earlier with the same options; skipped")
            return record.get("result")
        self.invalidated = self.invalidated or record is not None
        self.log(f"== {step}")
        started = time.perf_counter()
        result = _reported(step, action)
        seconds = round(time.perf_counter() - started, 1)
        self.state["steps"][step] = {"fingerprint": fingerprint, "seconds": seconds, "result": result,
                                     "options": options_to_dict(options)}
        atomic_write_json(self.state_path, self.state)
        self.log(f"   {step} took {seconds:.1f} s")
        return result

    def check_output(self) -> None:
        """The study folder can be written and does not overlap a local source folder."""
        local = None if self.config.source == "phantom" or self.config.source.startswith("kaggle:") \
            else self.config.source
        try:
            check_output(self.out, {"source": local}, verb="run", owned=(STATE_FILE,))
        except OutputError as error:
            raise click.ClickException(str(error)) from error

    def run(self) -> Path:
        """Run every step, holding the study folder's writer lock; returns the path of report.md."""
        self.check_output()
        # weights = "auto" without local ImageNet weights stops here, before any GAN time is spent
        _resolve_auto_weights(self.options("sweep", out=self.out / "results"), self.log)
        try:
            with writing(self.out, "run"):
                return self._run_steps()
        except OutputError as error:  # another run holds the folder, or the disk is full
            raise click.ClickException(str(error)) from error

    def _run_steps(self) -> Path:
        config = self.config
        if config.source == "phantom":
            from augstudy.data.phantom import make_phantom
            phantom = self.options("phantom")
            self._run_step("phantom", phantom, lambda: make_phantom(phantom).written)

        from augstudy.data.prepare import format_summary, prepare
        prepare_options = self.options("prepare")
        self._run_step("prepare", prepare_options,
                       lambda: self.log(format_summary(prepare(prepare_options))), _source_listing(self.source))
        from augstudy.data.prepared import prepared_content_sha256
        prepared = prepared_content_sha256(self.prepared)  # a prepared folder changed outside the study re-runs
        self._run_audit(inputs=prepared)                    # the steps that read it, and every later one
        if config.sections["sweep"].get("design") == "cv":
            return self._run_cv()

        for generator in config.generators:
            self.train_and_sample(generator, "", {}, prepared)
            if generator == "gan":
                self._run_audit(pool=self.pool)
        for generator in config.generators:
            self._run_metrics(generator, self.pool_of(generator))

        from augstudy.pipeline_sensitivity import run_sensitivity

        for split, results in self.sweep_outputs().items():
            sweep_options = self.options("sweep", out=results, **({"split": split} if split else {}))
            sweep_options = _resolve_auto_weights(sweep_options, self.log)
            self._run_step(f"sweep:{split or 'default'}", sweep_options, lambda o=sweep_options: _run_sweep(o))
            run_sensitivity(self, sweep_options, split)

        return self._write_report()

    def train_and_sample(self, generator: str, where: str, wired: dict[str, dict[str, Any]], inputs: Any = None) -> None:
        """Train one generator's models (`wired`: per section, the paths and seed that differ from the split
        design's, e.g. a cv fold's) and sample its pool, each a resumable step named `<section><where>`."""
        layout = self.layout(generator)
        train_options = self.options(layout.train, **wired.get(layout.train, {}))
        snapshots = self._run_step(f"{layout.train}{where}", train_options,
                                   lambda: {name: str(path) if path else None
                                            for name, path in _train_generator(generator, train_options).items()},
                                   inputs)
        untrained = sorted(name for name, path in snapshots.items() if path is None)
        if untrained:
            raise click.ClickException(f"{generator} run(s) {untrained}{where and ' of ' + where[1:]} were not "
                                       "trained, so there is nothing to generate from; train them (see above) and "
                                       "run this config again.")
        from augstudy.gan.generate import generate_pool
        generate_options = self.options(layout.generate, **wired.get(layout.generate, {}),
                                        networks=tuple(Path(snapshots[name]) for name in sorted(snapshots)))
        self._run_step(f"{layout.generate}{where}", generate_options, lambda: generate_pool(generate_options))

    def _run_metrics(self, generator: str, pool: Path) -> None:
        """gan-metrics (SWD, memorisation, KID/FID with a network) of one generator's pool, unchanged for either kind."""
        if not self.config.sections["metrics"].get("enabled", True):
            return
        from augstudy.metrics.evaluate import gan_metrics
        metrics_options = self.options("metrics", fake=pool, out=pool / "metrics.json")
        self._run_step("metrics" if generator == "gan" else f"metrics:{generator}", metrics_options,
                       lambda: _summarise_metrics(gan_metrics(metrics_options)))

    def _write_report(self) -> Path:
        from augstudy.report.study import write_study_report
        report = write_study_report(self)
        self.log(f"Report: {report}")
        return report

    def _run_cv(self) -> Path:
        """The cv design (augstudy.pipeline_cv): per fold and GAN seed a generator trained on that fold's
        training part and its pool, then the cv sweep over every fold."""
        from augstudy.pipeline_cv import check_pool_size, cv_plan, run_fold_generators
        from augstudy.pipeline_sensitivity import run_sensitivity

        ((split, results),) = self.sweep_outputs().items()  # load_config allows one split with cv
        sweep_options = self.options("sweep", out=results, **({"split": split} if split else {}))
        sweep_options = _resolve_auto_weights(sweep_options, self.log)
        resolved, plan = _reported("sweep", lambda: cv_plan(self, sweep_options))
        self.log(f"== cv design: {resolved.folds} folds x {resolved.repeats} repeat(s) on the {plan.split} images, "
                 f"{resolved.gan_seeds} GAN seed(s) per fold")
        check_pool_size(self, resolved, plan)
        run_fold_generators(self, plan, int(resolved.gan_seeds))
        self._run_audit(pool=self.sample_pool)
        for generator in self.config.generators:
            self._run_metrics(generator, self.sample_pool_of(generator))
        self._run_step(f"sweep:{split or 'default'}", sweep_options, lambda: _run_sweep(sweep_options))
        run_sensitivity(self, sweep_options, split)
        return self._write_report()

    def _run_audit(self, pool: Path | None = None, inputs: Any = None) -> None:
        """The shortcut audit, right after prepare (before any GAN time is spent) and again with the
        pool once there is one (adding the real-vs-synthetic probe); `[audit] enabled = false` skips it."""
        if not self.config.sections["audit"].get("enabled", True):
            return
        from augstudy.audit.run import AuditError, format_audit, run_audit

        options = self.options("audit", pool=pool)

        def action() -> dict[str, Any]:
            try:
                report = run_audit(options)
            except AuditError as error:
                raise click.ClickException(str(error)) from error
            self.log(format_audit(report))
            return {"shortcuts": report["shortcuts"], "flags": len(report["flags"])}

        self._run_step("audit:pool" if pool else "audit", options, action, inputs)

    def sweep_outputs(self) -> dict[str | None, Path]:
        """Split -> results folder; several splits (`splits = [...]`) each get a folder of their own."""
        splits = self.config.sections["sweep"].get("splits")
        if not splits:
            return {None: self.out / "results"}
        return {split: self.out / "results" / split for split in splits}


def _reported(step: str, action: Callable[[], Any]) -> Any:
    """Run a step's action; its command's user errors become the same message, without a traceback."""
    base = step.split(":")[0]
    errors: tuple[type[BaseException], ...] = ()
    if base in _USER_ERRORS:
        module, name = _USER_ERRORS[base]
        errors = getattr(importlib.import_module(module), name)
    try:
        return action()
    except errors as error:
        raise click.ClickException(f"[{step}] {error}") from error


def _summarise_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """Only a small JSON-able digest goes into study_state.json; the full report is in metrics.json."""
    return {"classes": sorted(report.get("classes", {}))} if isinstance(report, dict) else {}


def _train_generator(generator: str, options: Any) -> dict[str, Path | None]:
    """Run name -> final snapshot (None: not trained) of train_gan's or train_diffusion's options."""
    if generator == "gan":
        from augstudy.gan.train import train_gans
        return train_gans(options)
    from augstudy.diffusion.train import train_diffusions
    return dict(train_diffusions(options))


def _run_sweep(options: Any) -> dict[str, Any]:
    from augstudy.classify.sweep import run_sweep
    outcome = run_sweep(options)
    return {"trained": len(outcome.trained), "skipped": len(outcome.skipped),
            "features_computed": outcome.features_computed}


def _resolve_auto_weights(options: Any, log: Callable[[str], None]) -> Any:
    """`weights = "auto"`: ImageNet when Keras already holds the file locally (a torch backbone's weights
    ship in a package, so always); otherwise the study stops and names the file to put in place. A
    random-init backbone answers nothing about pathology, so it is used only when the config asks for it
    (`weights = "none"`), never as a silent fallback."""
    if options.weights != "auto":
        return options
    from augstudy.classify.backbones import backbone_spec

    spec = backbone_spec(options.backbone)
    if spec.framework == "torch":
        log(f"   {spec.name}: ImageNet weights from its installed package (no download needed)")
        return dataclasses.replace(options, weights="imagenet")
    keras_home = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
    local = keras_home / "models" / spec.weights_file
    if local.is_file():
        log(f"   ImageNet weights found at {local}")
        return dataclasses.replace(options, weights="imagenet")
    raise click.ClickException(
        f"[sweep] weights = \"auto\": no ImageNet weights for {spec.name} at {local}; put {spec.weights_file} "
        "there (or set weights = PATH to a local file), or set weights = \"none\" to run with a random-init "
        "backbone on purpose (its accuracies then test the pipeline, not the question)")


def _classes(config: StudyConfig, study: Study) -> list[str] | None:
    """The classes the GANs will be trained for, when known before prepare runs."""
    listed = config.sections["prepare"].get("classes") or config.sections["phantom"].get("classes")
    if listed:
        return list(listed)
    if config.source == "phantom":
        from augstudy.data.phantom import PhantomOptions
        return list(PhantomOptions(out=Path(".")).classes)
    options = study.prepared / "prepare_options.json"
    return list(json.loads(options.read_text(encoding="utf-8"))["classes"]) if options.is_file() else None


def demo_config_path() -> Path:
    return Path(str(resources.files("augstudy") / "configs" / DEMO_CONFIG))


def _run_study(config_path: Path, out: Path | None, source: str | None = None) -> None:
    try:
        config = load_config(config_path, out, source)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    started = time.perf_counter()
    click.echo(f"Study '{config.name}' -> {config.out}")
    report = Study(config, log=lambda line: click.echo(line)).run()
    click.echo(f"Finished in {time.perf_counter() - started:.0f} s. Open the report: {report} "
               f"(HTML: {report.with_suffix('.html')})")


@click.command("run")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=OutputPath(),
              help="Study folder  [default: the config's [study] out]")
@click.option("--source", help="Data source overriding the config's: a folder, kaggle:OWNER/SLUG or phantom.")
@click.option("--dry-run", is_flag=True, help="Check the config, print every step's options and exit.")
def run_command(config: Path, out: Path | None, source: str | None, dry_run: bool) -> None:
    """Run the full pipeline described by one experiment TOML; re-running resumes."""
    if dry_run:
        try:
            study = load_config(config, out, source)
        except ConfigError as error:
            raise click.ClickException(str(error)) from error
        plan = Study(study)
        plan.check_output()
        unused = {step for generator, layout in GENERATOR_LAYOUT.items() if generator not in study.generators
                  for step in (layout.train, layout.generate)}
        steps = {step: options_to_dict(plan.options(step)) for step in STEPS[:-1] if step not in unused
                 if step != "phantom" or study.source == "phantom"}
        for generator in study.generators:
            layout = GENERATOR_LAYOUT[generator]
            steps[layout.generate]["networks"] = f"the final snapshot of each {layout.train} run"
        from augstudy.gan.estimate import study_gan_gpu_time

        shown: dict[str, Any] = {"name": study.name, "source": study.source, "out": str(study.out), "steps": steps,
                                 "gan_gpu_time": study_gan_gpu_time(steps["prepare"], steps["train_gan"])}
        if study.sections["sweep"].get("design") == "cv":
            from augstudy.pipeline_cv import cv_dry_run
            shown["plan"] = cv_dry_run(plan, plan.options("sweep"), _classes(study, plan))
        click.echo(json.dumps(shown, indent=2, default=str))
        return
    _run_study(config, out, source)


@click.command("demo")
@click.option("--out", type=OutputPath(), default=Path("demo-out"),
              show_default=True, help="Study folder.")
def demo_command(out: Path) -> None:
    """The whole study offline on built-in phantom data (a few minutes on a laptop CPU)."""
    _run_study(demo_config_path(), out)

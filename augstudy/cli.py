"""The `augstudy` command line: one click command per verb, each in the module that owns it.

Commands are imported only when used, so `augstudy prepare` never loads TensorFlow and
`augstudy sweep` never loads the GAN.
"""

from __future__ import annotations

import importlib

import click

# verb -> (module, attribute, one-line help shown by `augstudy --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "phantom": ("augstudy.data.phantom", "phantom_command", "Write built-in chest-CT-like phantom data."),
    "prepare": ("augstudy.data.prepare", "prepare_command", "Clean, dedupe and resize a labelled image set."),
    "audit": ("augstudy.audit.run", "audit_command", "Can the label be predicted without pathology?"),
    "train-gan": ("augstudy.gan.train", "train_gan_command", "Train StyleGAN2-ADA per class or conditional."),
    "train-diffusion": ("augstudy.diffusion.train", "train_diffusion_command",
                        "Train a denoising diffusion model (MONAI) per class or conditional."),
    "import-network": ("augstudy.gan.import_network", "import_network_command",
                       "Convert an official NVlabs .pkl to a snapshot (no code run)."),
    "generate": ("augstudy.gan.generate", "generate_command", "Generate a synthetic pool from snapshots."),
    "gan-metrics": ("augstudy.metrics.cli", "gan_metrics_command", "KID/FID/SWD and memorisation check."),
    "sweep": ("augstudy.classify.sweep", "sweep_command", "Classifier over synthetic ratios x seeds."),
    "predict": ("augstudy.classify.predict", "predict_command", "Classify images with a trained head."),
    "publish": ("augstudy.publish", "publish_command", "Package a pool as a Kaggle dataset."),
    "run": ("augstudy.pipeline", "run_command", "Run a whole study from one TOML config."),
    "demo": ("augstudy.pipeline", "demo_command", "The whole study offline on phantom data."),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attribute, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, _, help_text) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="augstudy")
def main() -> None:
    """augstudy: when real images are scarce, do GAN-made images make a classifier better?"""

"""The ``upconv`` command line. Each command lives in its own module and loads on demand,
so ``upconv --help`` stays fast and one command's heavy imports never slow another."""

from __future__ import annotations

import importlib

import click

# command name -> (module in upconv.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("demo", "demo", "Upscale the bundled BSD300 koala ×3 both ways and compare."),
    "upscale": ("sr", "upscale", "Upscale images with a bundled or saved model."),
    "evaluate": ("sr", "evaluate", "PSNR / SSIM of the model, bicubic and the converted path."),
    "train": ("sr", "train", "Train an ESPCN (sub-pixel or resize-conv) model."),
    "convert": ("convert", "convert", "Convert a model's upsampling layers to deconvolutions."),
    "cost": ("cost", "cost", "Time and energy cost model of a layer or a model."),
    "calibrate": ("cost", "calibrate", "Measure this machine and write a hardware profile."),
    "bench": ("bench", "bench", "Run the benchmark suite."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands import their module only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise
            return _unavailable(name)
        return getattr(mod, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name=name)
    def _cmd() -> None:
        raise click.ClickException(f"'upconv {name}' is not available in this build")

    return _cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="upconv")
def main() -> None:
    """upconv: learned upsampling layers, trained as sub-pixel or resize convolutions and run
    as efficient deconvolutions (REVD2)."""

"""The fkd-track command line: wires sources, detector, crops, engine, tracker, smoothing and outputs.

Commands are plain functions with typed options; user errors print one line and exit with status 2.
"""

from __future__ import annotations

import sys

import typer

from tracker.errors import UserError

app = typer.Typer(
    name="fkd-track",
    help="Real-time facial keypoint tracker: 15 Kaggle keypoints on every face, live or from video.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    """Attach the command groups that live beside the tracker (train needs torch only when run)."""
    from engines.cli import export
    from train.cli import train_app

    app.add_typer(train_app, name="train")
    app.command("export")(export)


_register()


def main() -> None:
    """Console entry point: run the app, turning user errors and Ctrl-C into one line each."""
    try:
        app(standalone_mode=False)
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except (typer.Abort, typer.Exit) as err:
        sys.exit(getattr(err, "exit_code", 1))
    except Exception as err:  # click usage errors come through here with standalone_mode=False
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise

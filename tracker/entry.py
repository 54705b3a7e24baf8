"""The console entry point and its one error contract, shared by every fkd-track command.

User errors, usage errors (a bad option value, a missing argument: with the command's --help to see) and
OSErrors print one `error:` line (exit 2), Ctrl-C / SIGTERM print `interrupted` (exit 130 / 143), anything
else one line (exit 1; --debug shows it).
"""

from __future__ import annotations

import os
import signal
import sys

from engines.errors import Terminated

DEBUG_HINT = "run with --debug (or FKD_DEBUG=1) for the traceback"


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _debug_requested(argv: list[str]) -> bool:
    """True for --debug anywhere before a `--` (removed from argv) or FKD_DEBUG=1."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    found = "--debug" in head
    if found:
        argv.remove("--debug")
    return found or os.environ.get("FKD_DEBUG", "") not in ("", "0")


def _describe_oserror(err: OSError) -> str:
    reason = err.strerror or str(err)
    paths = [p for p in (err.filename, getattr(err, "filename2", None)) if p]
    return f"{' -> '.join(map(str, paths))}: {reason}" if paths else reason


def _usage_message(err) -> str:
    """A usage error as one line, naming the command's --help (Typer would print its usage block instead)."""
    message = " ".join(err.format_message().split()) or type(err).__name__
    ctx = getattr(err, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f" (see '{ctx.command_path} {ctx.help_option_names[0]}')"
    return message


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run fkd-track with `argv` (default sys.argv[1:]) and exit with the contract's status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except Terminated:
        print("interrupted (SIGTERM)", file=sys.stderr, flush=True)
        sys.exit(143)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - the contract's last line of defence
        _handle(err, debug)
    if code == 130:  # without standalone mode Typer returns the exit code of an Abort (Ctrl-C in a prompt)
        print("interrupted", file=sys.stderr, flush=True)
    if isinstance(code, int) and code:
        sys.exit(code)


def _run(args: list[str]):
    from tracker.cli import app  # imported here so Ctrl-C during the imports is caught too
    from tracker.sources import quiet_video_logs

    quiet_video_logs()
    return app(args=args, prog_name="fkd-track", standalone_mode=False)


def _handle(err: BaseException, debug: bool) -> None:
    import typer

    from engines.errors import UserError

    if isinstance(err, UserError):
        _fail(str(err), 2)
    if isinstance(err, typer.Exit):
        sys.exit(err.exit_code)
    if isinstance(err, typer.Abort):
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    if isinstance(err, typer.TyperException) and hasattr(err, "format_message"):  # usage (vendored click)
        _fail(_usage_message(err), 2)
    if debug:
        raise err
    if isinstance(err, MemoryError):
        _fail(f"out of memory ({err}); try a smaller --batch. {DEBUG_HINT}", 1)
    if isinstance(err, OSError):
        _fail(_describe_oserror(err), 2)
    where = ""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" in {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    message = " ".join(str(err).split())  # one line, whatever the library put in it
    _fail(f"unexpected {type(err).__name__}{where}: {message}; {DEBUG_HINT}", 1)


if __name__ == "__main__":
    main()

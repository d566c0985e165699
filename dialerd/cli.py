"""The ``dialerd`` command line: run the daemon, check a config, run the demo, drive a daemon."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dialerd import __version__


def _version(_args: argparse.Namespace) -> int:
    print(f"dialerd {__version__}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from dialerd.config import ConfigError, load_config
    from dialerd.service.daemon import watchdog_problem

    try:
        config = load_config(args.file)
        # The daemon reads these at start and on reload: a reload must not fail on them.
        config.ops.read_token()
        if config.smtp is not None:
            config.smtp.read_password()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    problem = watchdog_problem(config, args.watchdog_sec) if args.watchdog_sec > 0 else None
    if problem is not None:
        print(f"{args.file}: {problem}", file=sys.stderr)
        return 1
    print("ok")
    return 0


def _run(args: argparse.Namespace) -> int:
    import anyio
    import structlog

    from dialerd.config import ConfigError, load_config, parse_listen
    from dialerd.ports import QueueUnavailable
    from dialerd.service import logs
    from dialerd.service.daemon import Daemon, serve
    from dialerd.service.statedir import private_umask
    from dialerd.store import StoreError

    try:
        config = load_config(args.config)
        if args.listen:
            parse_listen(args.listen)
    except ConfigError as exc:
        print(f"dialerd: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"dialerd: --listen: {exc}", file=sys.stderr)
        return 1
    logs.configure_logging(config.log.level, args.log_format or config.log.format)
    log = structlog.get_logger("dialerd.daemon")
    # Whatever the shell's umask: the store, ledgers and ids are the daemon's alone.
    private_umask()
    state_dir = Path(args.state_dir or config.state_dir)
    try:
        daemon = Daemon(
            config,
            config_path=Path(args.config),
            state_dir=state_dir,
            log_format=args.log_format,
            api_listen=args.listen,
        )
    except ConfigError as exc:
        print(f"dialerd: {exc}", file=sys.stderr)
        return 1
    try:
        anyio.run(serve, daemon)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        # Start-up failures a user can act on (store, ports, files) are one log line,
        # not a traceback; anything else is a bug and propagates.
        leaves = list(_leaf_exceptions(exc))
        if not all(isinstance(leaf, StoreError | QueueUnavailable | OSError) for leaf in leaves):
            raise
        for leaf in leaves:
            log.error("dialerd cannot run", error=str(leaf))
        return 1
    log.info("dialerd stopped")
    return 0


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaf_exceptions(inner)]
    return [exc]


def _demo(args: argparse.Namespace) -> int:
    from dialerd.demo.sim import run_demo

    return run_demo(args)


def _completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``dialerd`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="dialerd",
        description="Outbound dialer daemon: runs calling campaigns with service-level pacing.",
    )
    parser.add_argument("--version", action="version", version=f"dialerd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(func=_version)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file", help="path of the TOML config file")
    check.add_argument(
        "--watchdog-sec",
        type=float,
        default=30.0,
        help="the unit's WatchdogSec (default 30, the shipped unit's; 0 = no watchdog): "
        "refuse a store timeout that would get the daemon killed during a store outage",
    )
    check.set_defaults(func=_check_config)

    run = commands.add_parser("run", help="run the daemon until SIGTERM or SIGINT")
    run.add_argument("--config", required=True, help="path of the TOML config file")
    run.add_argument("--state-dir", help="directory for the SQLite store and ledgers")
    run.add_argument("--listen", help="API listen address host:port (overrides [api] listen)")
    run.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="overrides [log] format"
    )
    run.set_defaults(func=_run)

    demo = commands.add_parser(
        "demo", help="run one campaign on a simulated call centre and print a summary"
    )
    demo.add_argument(
        "--targets",
        type=_positive_int,
        default=None,
        help="targets to dial (default 300; 30 with --telephony asterisk)",
    )
    demo.add_argument("--agents", type=_positive_int, default=15, help="simulated agents")
    demo.add_argument(
        "--service-level", type=_non_negative_int, default=100, help="campaign service_level"
    )
    demo.add_argument(
        "--pacing",
        choices=["service_level", "predictive"],
        default="service_level",
        help="pacing mode of the campaign (predictive aims at --target-abandon-rate)",
    )
    demo.add_argument(
        "--target-abandon-rate", type=float, default=0.03, help="predictive: at most 0.03"
    )
    demo.add_argument("--speed", type=_positive_float, default=25.0, help="simulated time factor")
    demo.add_argument("--seed", type=int, default=1, help="random seed of the simulation")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    demo.add_argument(
        "--actions",
        choices=["none", "ivr", "webhook"],
        default="none",
        help="ivr: press 1 for an agent, 9 for the do-not-call list; webhook: a flow "
        "campaign posting to a receiver on 127.0.0.1 (sim only)",
    )
    demo.add_argument(
        "--events",
        action="store_true",
        help="print each event as the customer's webhook would get it (one JSON line each)",
    )
    demo.add_argument(
        "--telephony",
        choices=["sim", "asterisk"],
        default="sim",
        help="sim: the simulated call centre; asterisk: the real rig of scripts/rig",
    )
    demo.add_argument(
        "--rig-dir",
        # scripts/rig's own default
        default=os.environ.get("DIALERD_RIG_DIR") or "/var/tmp/dialerd-rig",  # noqa: S108
        help="with --telephony asterisk: the rig directory (its SIPp ledger is checked)",
    )
    demo.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="error",
        help="daemon log lines shown during the demo (JSON when not on a terminal)",
    )
    demo.set_defaults(func=_demo)

    from dialerd.client import add_client_commands

    add_client_commands(commands)
    completion = commands.add_parser(
        "completion",
        help="print the bash or zsh completion script",
        description="Print a completion script: dialerd completion bash > "
        "/usr/share/bash-completion/completions/dialerd (scripts/install does this).",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(func=_completion)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


# Exit codes of a command cut short, as a shell reports a process killed by the signal.
EXIT_BROKEN_PIPE = 128 + 13
EXIT_INTERRUPTED = 128 + 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dialerd`` console script.

    Output cut short never prints a traceback: a reader that went away (``| head -1``)
    ends the command silently with exit status 141, Ctrl-C with 130.
    """
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # Nothing reads our output any more: point stdout at /dev/null so that the
        # interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())

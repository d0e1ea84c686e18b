"""The ``accel`` command: a thin skin over :class:`accel.Manager`.

``main(argv) -> int`` parses the options (and the config file), builds a Manager with them
and hands the URLs to :class:`accel.cli.batch.Runner`; errors map to exit codes in one place
(:data:`accel.cli.exitcodes.EXIT_CODES`). Nothing here knows how downloading works.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

from accel.cli._startup import exit_quietly_on_signals, leave
from accel.cli.args import parse_args
from accel.cli.exitcodes import EXIT_OK, EXIT_SIGINT, EXIT_USAGE
from accel.cli.network import finish_cookies, network_settings
from accel.exceptions import UsageError

if TYPE_CHECKING:
    from accel.manager import Manager

log = logging.getLogger("accel")


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("accel: %(message)s"))
    logger = logging.getLogger("accel")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else list(argv))
        if args.demo:
            from accel.cli.demo import main as demo

            return demo(main)
        # Only now the network stack: --help, --version and usage errors need none of it.
        from accel.cli.batch import Runner
        from accel.cli.inputfile import JobList

        jobs = JobList(args, sys.stdin)
    except UsageError as exc:
        sys.stderr.write(f"accel: error: {exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version print and "exit": return instead
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    _configure_logging(args.verbose, args.quiet)
    if args.insecure:
        sys.stderr.write("accel: warning: TLS certificate verification is disabled (--insecure)\n")
        # Said once here; urllib3 would repeat it for every request.
        from accel._http.session import silence_insecure_warnings

        silence_insecure_warnings()
    try:
        manager = _manager(args)
    except UsageError as exc:
        sys.stderr.write(f"accel: error: {exc}\n")
        return EXIT_USAGE
    code = Runner(args, jobs, manager, sys.stderr, sys.stdout).run()
    return finish_cookies(args, manager.options.cookies, code, sys.stderr)


def _manager(args: Any) -> Manager:
    """The Manager that runs the downloads with the command line's settings."""
    from accel.manager import Manager

    headers = list(args.header)
    if args.user_agent:
        headers.append(("User-Agent", args.user_agent))
    return Manager(
        jobs=args.jobs,
        track=False,  # the runner follows each download with a done callback
        directory=args.dir,
        max_per_host=args.max_per_host,
        connections=args.connections,
        max_connections=args.max_connections,
        headers=headers,
        timeout=args.timeout,
        retries=args.retries,
        force=args.force,
        verify=False if args.insecure else (args.ca_bundle or True),
        checksum=args.checksum,
        server_digest=args.server_digest,
        limit_rate=args.limit_rate,
        max_filesize=args.max_filesize,
        fsync=args.fsync,
        low_speed_limit=args.speed_limit,
        low_speed_time=args.speed_time,
        **network_settings(args),
    )


def main_entry() -> None:
    """Console-script entry point (and ``python -m accel``).

    Ctrl-C at any moment exits 130 (SIGTERM 143) with no traceback: while downloads run,
    the runner's handlers save their state first; before and after, nothing is left to
    save and the process exits at once (see :mod:`accel.cli._startup`).
    """
    exit_quietly_on_signals()
    try:
        code = main()
    except KeyboardInterrupt:  # only if a signal handler of another kind was in place
        code = EXIT_SIGINT
    leave(code)

"""The ``leakware`` command: ``leakware report`` ranks leaking routes from event logs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from leakware.settings import AVAILABLE_ENGINES

__all__ = ["main"]

_DESCRIPTION = """\
Find memory leaks in web services from leakware's event logs.

examples:
  LEAKWARE_SAMPLE_RATE=0.05 LEAKWARE_LOG_FILE=leaks.jsonl gunicorn app:app
  leakware report leaks.jsonl
  leakware report --format json --verdict leak leaks.jsonl
  leakware replay examples.fastapi_app:app --traffic examples/traffic.har --passes 3
"""


class CommandError(Exception):
    """An error the user can fix; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = stdout if stdout is not None else sys.stdout
    try:
        return int(args.run(args, out))
    except CommandError as exc:
        print(f"leakware: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `leakware report ... | head`
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leakware",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    report = commands.add_parser(
        "report",
        help="rank leaking routes from JSON-lines event logs",
        description="Read leakware events from one or more log files (several workers, several "
        "days), group the samples by method, route and exception, and rank them, leaks first.",
    )
    report.add_argument("files", nargs="+", metavar="FILE", help="JSON-lines log file")
    report.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format"
    )
    report.add_argument(
        "--verdict",
        choices=("leak", "warming", "clean", "insufficient"),
        help="show only findings with this verdict",
    )
    report.set_defaults(run=_run_report)

    replay = commands.add_parser(
        "replay",
        help="send recorded requests to an app in-process and report what leaked",
        description="Import a WSGI or ASGI app, send it the requests of a HAR file or a "
        "JSON-lines file one at a time with every request measured, and print the report. "
        "The app runs in a child process.",
    )
    replay.add_argument("app", metavar="APP", help="the app as module:attribute, e.g. app:app")
    replay.add_argument(
        "--traffic", required=True, metavar="FILE", help="HAR file or JSON lines of requests"
    )
    replay.add_argument(
        "--passes", type=_positive_int, default=1, metavar="N",
        help="send the whole file N times (default: 1)",
    )
    replay.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format"
    )
    replay.add_argument(
        "--engine",
        choices=AVAILABLE_ENGINES,
        default="young",
        help="snapshot engine (default: young)",
    )
    replay.set_defaults(run=_run_replay)
    return parser


def _run_report(args: argparse.Namespace, out: TextIO) -> int:
    from leakware.report.findings import build_findings
    from leakware.report.reader import ReportInputError, read_events
    from leakware.report.render import render_json, render_table

    try:
        events = read_events(args.files)
    except ReportInputError as exc:
        raise CommandError(str(exc)) from None
    findings = build_findings(events)
    if args.verdict:
        findings = [finding for finding in findings if finding.verdict == args.verdict]
    if args.format == "json":
        render_json(findings, events, out)
    else:
        render_table(findings, events, out)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"invalid value {text!r}: expected a whole number, 1 or more"
        raise argparse.ArgumentTypeError(msg)
    return value


def _run_replay(args: argparse.Namespace, out: TextIO) -> int:
    import tempfile

    from leakware.replay import ReplayError, describe_replay, run_replay
    from leakware.report.findings import build_findings
    from leakware.report.reader import read_events
    from leakware.report.render import render_json, render_table

    with tempfile.TemporaryDirectory(prefix="leakware-replay-") as workdir:
        log_file = f"{workdir}/events.jsonl"
        try:
            summary = run_replay(
                args.app, args.traffic, passes=args.passes, engine=args.engine,
                log_file=log_file, warn=_warn,
            )
        except ReplayError as exc:
            raise CommandError(str(exc)) from None
        events = read_events([log_file])
    findings = build_findings(events)
    if args.format == "json":
        render_json(findings, events, out, extra={"replay": summary})
    else:
        out.write(describe_replay(summary))
        render_table(findings, events, out)
    return 0


def _warn(message: str) -> None:
    print(f"leakware: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

"""The ``leakware`` command: ``leakware report`` ranks leaking routes from event logs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["main"]

_DESCRIPTION = """\
Find memory leaks in web services from leakware's event logs.

examples:
  LEAKWARE_SAMPLE_RATE=0.05 LEAKWARE_LOG_FILE=leaks.jsonl gunicorn app:app
  leakware report leaks.jsonl
  leakware report --format json --verdict leak leaks.jsonl
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


if __name__ == "__main__":
    sys.exit(main())

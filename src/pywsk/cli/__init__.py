"""The ``pywsk`` command.

``pywsk demo`` runs the seed pages' disconnect behaviours against an embedded loopback peer
and prints, per scenario, the WSK calls, the statuses, the IRP completions, what went on
the wire and what the peer observed, with a verdict.  Exit status 0 when every scenario
behaved as documented, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .demo import SCENARIOS, Report, run_scenario

__all__ = ["main"]


def _print_report(report: Report) -> None:
    print(f"\n== {report.name}: {report.title}")
    print(f"   documented: {report.expected}")
    for t, text in report.timeline:
        print(f"   {t * 1e3:9.3f} ms  {text}")
    print(f"   wire ({report.wire_source or 'not observed'}):")
    for line in report.wire or ["(nothing)"]:
        print(f"      {line}")
    print(f"   peer: {report.peer}")
    if report.ok:
        print("   verdict: OK - behaves as documented")
    else:
        for problem in report.problems:
            print(f"   verdict: DEVIATION - {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pywsk",
        description="Microsoft's Winsock Kernel (WSK) interface in Python, over real Linux TCP.",
        epilog="examples:\n  pywsk demo\n  pywsk demo --scenario abortive --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="run the documented disconnect behaviours against an embedded loopback peer",
        description="Run WskDisconnect / WskCloseSocket scenarios against a loopback peer.",
    )
    demo.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (may be repeated)",
    )
    demo.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)

    names = args.scenario or list(SCENARIOS)
    reports = [run_scenario(name) for name in names]
    if args.json:
        json.dump([r.as_dict() for r in reports], sys.stdout, indent=2)
        print()
    else:
        for report in reports:
            _print_report(report)
        good = sum(r.ok for r in reports)
        print(f"\n{good} of {len(reports)} scenarios behaved as documented.")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())

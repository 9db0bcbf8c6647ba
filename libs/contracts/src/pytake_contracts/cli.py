"""pytake-contracts docs | check"""

from __future__ import annotations

import argparse
import sys

from .docs import check, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytake-contracts")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("docs", help="write JSON Schemas (a new snapshot per compatible change) and asyncapi.json")
    sub.add_parser("check", help="fail when committed docs differ from the code or a schema breaks its history")
    args = parser.parse_args(argv)
    findings = write() if args.command == "docs" else check()
    for finding in findings:
        print(f"{finding.event}: {finding.problem}", file=sys.stderr)
    if findings:
        print("breaking change: publish it as a new schema_version" if args.command == "docs" else
              "contract check failed", file=sys.stderr)
        return 1
    print("contracts: docs up to date, every schema compatible with its history")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

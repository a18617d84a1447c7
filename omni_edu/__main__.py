"""Command line: ``python -m omni_edu doctor``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omni_edu", description="Omni from Scratch")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="print the set-up report (versions, GPU, profile, warnings)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from omni_edu.tools.doctor import print_report

        print_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())

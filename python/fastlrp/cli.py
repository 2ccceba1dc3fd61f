"""The `fastlrp` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastlrp", description="Fast Layer-wise Relevance Propagation.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="explain the shipped census-income classifier (offline)",
                          description="Explain the census-income MLP shipped with fastlrp on the UCI Adult "
                                      "test set: accuracy, relevance per attribute, PNG charts.")
    demo.add_argument("--out", default="fastlrp-demo", help="folder for the PNGs and relevance.npz (default: %(default)s)")
    demo.add_argument("--composite", default="w2_epsilon", help="composite preset (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run

            run(args.out, args.composite)
    except (ValueError, TypeError, OSError) as exc:
        print(f"fastlrp {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

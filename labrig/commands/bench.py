"""``labrig bench info`` and ``labrig bench snap``: look at a bench before trusting it."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labrig.commands import add_profile_option, common_options

__all__ = ["add_parser", "cmd_discover", "cmd_info", "cmd_snap", "format_discovery", "format_info"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="inspect the bench: devices, a test frame")
    sub = bench.add_subparsers(dest="bench_command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", parents=[common_options()],
                          help="open the bench and list its devices with identity and settings")
    add_profile_option(info)
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(handler=cmd_info)

    snap = sub.add_parser("snap", parents=[common_options()],
                          help="grab one camera frame (light armed, then made safe) to a file")
    add_profile_option(snap)
    snap.add_argument("--out", "-o", type=Path, default=None, metavar="FILE",
                      help="output .npy, .png or .h5 (default: snap-<time>.npy here)")
    snap.add_argument("--timeout", type=float, default=1.0, metavar="S",
                      help="frame timeout in seconds (default: 1)")
    snap.set_defaults(handler=cmd_snap)

    disc = sub.add_parser("discover", parents=[common_options()],
                          help="list attached cameras, serial ports and displays; write a starting profile")
    disc.add_argument("--cti", action="append", default=[], metavar="FILE",
                      help="GenTL producer to enumerate cameras with (repeatable; default: "
                           "$GENICAM_GENTL64_PATH, else those shipped in installed packages)")
    disc.add_argument("--out", "-o", type=Path, default=None, metavar="FILE",
                      help="write a starting profile TOML here (refuses to overwrite)")
    disc.add_argument("--name", default="my-rig", help="bench name in the written profile")
    disc.add_argument("--json", action="store_true", help="print what was found as JSON")
    disc.set_defaults(handler=cmd_discover)


def cmd_info(args: argparse.Namespace) -> int:
    from labrig.bench import open_bench
    from labrig.io import json_default

    with open_bench(args.profile) as bench:
        info = bench.describe()
    if args.json:
        print(json.dumps(info, indent=2, default=json_default))
    else:
        print(format_info(info))
    return 0


def cmd_snap(args: argparse.Namespace) -> int:
    from labrig.bench import open_bench

    out = args.out
    if out is None:
        out = Path(f"snap-{_dt.datetime.now():%Y%m%d-%H%M%S}.npy")
    with open_bench(args.profile) as bench:
        frame = bench.snap(out, timeout_s=args.timeout)
    print(f"wrote {out}: {frame.shape[0]}x{frame.shape[1]} {frame.dtype}, "
          f"min {frame.min()}, max {frame.max()}, mean {frame.mean():.1f}")
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    from drivers.discover import discover, starting_profile
    from labrig.io import atomic_write

    found = discover(args.cti)
    print(json.dumps(found.as_dict(), indent=2) if args.json else format_discovery(found.as_dict()))
    if args.out is not None:
        if args.out.exists():
            raise SystemExit(f"{args.out} exists; choose another --out (discover never overwrites)")
        text = starting_profile(found, args.name)
        atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        print(f"wrote a starting profile to {args.out}: edit it, then "
              f"`labrig bench info --profile {args.out}`")
    return 0


def format_discovery(found: Mapping[str, Any]) -> str:
    """`Discovery.as_dict()` as one block per kind: what was found, how it was looked for."""
    lines: list[str] = []
    for kind, probe in found.items():
        lines.append(f"{kind.replace('_', ' ')}: {len(probe['found'])} found  (looked with {probe['method']})")
        if probe["error"]:
            lines.append(f"  problem: {probe['error']}")
        for item in probe["found"]:
            lines.append("  " + " ".join(f"{k}={_fmt(v)}" for k, v in item.items() if v not in ("", None)))
        lines.append("")
    return "\n".join(lines).rstrip()


# -- readable table ---------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def format_info(info: Mapping[str, Any]) -> str:
    """`Bench.describe()` as a device table followed by each device's settings."""
    profile = info["profile"]
    lines = [f"bench {profile['name']}  ({profile['source']})", ""]
    rows = [["ROLE", "KIND", "NAME", "IDENTITY"]]
    for role, dev in info["devices"].items():
        identity = " ".join(f"{k}={v}" for k, v in dev.get("identity", {}).items() if v != "")
        rows.append([role, dev["kind"], dev["name"], identity or "-"])
    lines += _table(rows)
    for role, dev in info["devices"].items():
        settings = dev.get("settings", {})
        lines += ["", f"{role}: {dev['class']}"]
        if settings:
            lines += ["  " + line for line in _table([[k, _fmt(v)] for k, v in settings.items()])]
        else:
            lines.append("  (no settings)")
    return "\n".join(lines)

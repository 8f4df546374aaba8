"""``python -m src.study <study> [options]`` — see ``python -m src.study --help`` for the list."""
from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Sequence

from .. import cli
from ..artifacts import setup_logging

# study modules; each names its sub-commands in STUDIES (and may give each a help line in HELP)
MODULES = ("controlled", "devices", "data_analysis", "sequences", "embedding_space", "regression")


def study_modules() -> dict[str, ModuleType]:
    """Sub-command name -> module; a module that is not there yet is simply not offered."""
    out: dict[str, ModuleType] = {}
    for name in MODULES:
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            continue
        for study in mod.STUDIES:
            out[study] = mod
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser("study", "Course studies: controlled experiments, timing, data analysis, sequences, embeddings, "
                             "regression. Each writes a Markdown + CSV table and figures under reports/<study>/.")
    sub = ap.add_subparsers(dest="study", required=True, metavar="STUDY")
    for study, mod in study_modules().items():
        line = getattr(mod, "HELP", {}).get(study) or (mod.__doc__ or "").strip().splitlines()[0]
        sp = sub.add_parser(study, help=line, formatter_class=cli.HelpFormatter,
                            description=(mod.__doc__ or "").strip())
        mod.add_arguments(sp, study)
        sp.set_defaults(_module=mod)
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    out = args._module.run(args)
    print(f"report: {out}")


if __name__ == "__main__":
    cli.run_command(main)

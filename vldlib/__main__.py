"""Command line: ``python -m vldlib {train,describe,caption,book} ...``.

Each subcommand lives in its module as ``main(argv) -> int``; this file only dispatches.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("vldlib.cli.train", "train a student by distillation and print its result record"),
    "describe": ("vldlib.cli.describe", "fill an LLM class-description cache (openai client)"),
    "caption": ("vldlib.cli.caption", "caption training images through a vision chat endpoint (L_cap)"),
    "book": ("vldlib.book", "execute the notebooks with papermill and build the Jupyter Book"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        lines = [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: python -m vldlib COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vldlib: unknown command {name!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C while importing, before the command's own handler
        print(f"vldlib {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

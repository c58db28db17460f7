"""``python -m vldlib.book``: see :mod:`vldlib.book.cli`."""
import sys

from vldlib.book.cli import main

if __name__ == "__main__":
    sys.exit(main())

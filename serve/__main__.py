"""``python -m serve --port 0 ...``: the same as ``ragfix serve`` (used by tests and ``ragfix bench serve``)."""
import sys

from serve.cli import main

sys.exit(main())

"""`python -m kernelos` is the `kernelos` command (tools/cli.py)."""

import sys

from tools.cli import main

sys.exit(main())

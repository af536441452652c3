"""`python -m digitrec ...`: the same as the `digitrec` command, for environments (a GPU machine,
a checkout on PYTHONPATH) where the package was not installed. Try: `python -m digitrec --help`."""

import sys

from .cli import main

sys.exit(main())

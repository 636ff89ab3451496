"""`python -m portguard`."""

import sys

from portguard.cli import main

sys.exit(main())

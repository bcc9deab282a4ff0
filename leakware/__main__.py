"""Allow ``python -m leakware``."""

import sys

from leakware.cli import main

sys.exit(main())

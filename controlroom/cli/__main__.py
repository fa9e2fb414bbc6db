"""`python -m controlroom.cli` is `controlroom`."""

import sys

from controlroom.cli.main import main

sys.exit(main())

"""``python -m recdistill`` (also what ``torchrun -m recdistill`` runs)."""

import sys

from recdistill.cli import main

sys.exit(main())

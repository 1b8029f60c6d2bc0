"""`python -m services.notifier`: the standalone notifier (services/notifier/main.py)."""

import sys

from services.notifier.main import main

sys.exit(main())

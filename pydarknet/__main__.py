"""``python -m pydarknet``: the ``pydarknet`` command."""
import sys

from .commands import main

sys.exit(main())

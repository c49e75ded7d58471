"""
C{python -m ztnagw} runs the admin command, for environments where the
console script is not on C{PATH}.
"""

import sys

from ztnagw.cli import main

sys.exit(main())

"""
C{python -m ztnagw.forwarder} runs C{ztnagw-forward}, for environments where
the console script is not on C{PATH}.
"""

import sys

from ztnagw.forwarder.cli import main

sys.exit(main())

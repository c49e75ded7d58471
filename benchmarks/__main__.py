"""
C{python -m benchmarks}: the side-by-side benchmark (see L{benchmarks.harness}).
"""

import sys

from benchmarks.harness import main

sys.exit(main())

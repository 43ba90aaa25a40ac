"""python -m bench.reliability [a b c d e]"""

import sys

from bench.reliability.run import main

sys.exit(main(sys.argv[1:]))

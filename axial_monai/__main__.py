"""``python -m axial_monai``: the ``axial-monai`` command line (:mod:`axial_monai.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

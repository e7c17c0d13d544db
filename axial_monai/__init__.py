"""axial-monai: interpretable 3D brain-MRI classification with 2D CNNs and slice attention."""

import warnings

__version__ = "0.3.4"

# with MONAI Deploy installed (the deploy extra), ``import monai`` imports Holoscan, which warns on every start
# that the stack limit is below what its own threads want; the deploy application raises it (deploy.launch)
warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)

"""axial-monai: interpretable 3D brain-MRI classification with 2D CNNs and slice attention."""

__version__ = "0.3.1"

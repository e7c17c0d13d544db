"""The MONAI Deploy application of an exported bundle: a DICOM study in, DICOM results and JSON out.

* :mod:`.folder`: ``write_application`` (``axial-monai deploy BUNDLE OUT``), the application folder;
* :mod:`.study`: the package's own steps around the compiled model (series selection, preprocessing, QC gate, the
  eager answer and the check of the compiled one);
* :mod:`.results`: what is written (JSON, a DICOM Structured Report, a secondary capture), with highdicom;
* :mod:`.launch`: the entry point of an application folder (exit status, the stack Holoscan wants);
* :mod:`.app`: the Holoscan graph with the SDK's ``MonaiBundleInferenceOperator``. It imports MONAI Deploy App SDK
  (``pip install axial-monai[deploy]``), so nothing else here imports it.
"""

from .folder import APP_FILES, write_application
from .results import StudyResult, secondary_capture, structured_report, write_results
from .study import PreparedStudy, finish_study, prepare_study

__all__ = [
    "APP_FILES",
    "PreparedStudy",
    "StudyResult",
    "finish_study",
    "prepare_study",
    "secondary_capture",
    "structured_report",
    "write_application",
    "write_results",
]

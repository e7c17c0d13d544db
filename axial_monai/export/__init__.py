"""Export a trained run as a MONAI model-zoo bundle that the zoo's own checks accept (folder + zip).

Layout of the bundle (every path in its configs is relative to ``bundle_root``)::

    <name>/                         <data>_<modality>_<task>, e.g. adni_mri_classification
        manifest.json               the size and SHA-256 of every file (checked by the receiver first)
        manifest.sig                the Ed25519 signature of the manifest, only with sign_key
        LICENSE                     Apache License 2.0
        large_files.yml             files over 1 MB: path, url (<url_base>/<path>), md5
        configs/metadata.json       meta_schema_20240725: classes, input grid, pinned packages, version + changelog
        configs/inference.json      the shipped inference.json with the bundle's overrides
        configs/explain.json        merged over inference.json: maps and region tables
        configs/train.json          training further from models/model.pt on the receiver's data
        configs/evaluate.json       merged over train.json: this model on the receiver's labelled data
        configs/multi_gpu_train.json, configs/logging.conf
        models/model.pt             the weights: a plain state dict (what the zoo's ckpt_export loads as it is)
        models/run_settings.json    the run settings (network, classes, intensity, input grid), checked on loading
        models/template.nii.gz      the registration template on the input grid, and models/brain_mask.nii.gz
        models/control_mean.nii.gz  the mean control scan, only with with_control_mean
        models/model.ts             TorchScript (scripted), locked to the input grid; only if it equals the network
        scripts/                    the code of this package the configs use, as the package ``scripts``
        docs/README.md              the zoo's sections, with the run's own figures
        docs/data_license.txt       terms of the template and of the training data
        docs/requirements.txt       the packages, in ranges that install on Python 3.10 to 3.13

Nothing in it names a folder of the exporting machine (checked before it is written), and it carries nothing
derived from training scans unless asked (``with_control_mean``).
"""

from .bundle import ExportedBundle, export_bundle, shared_settings
from .compiled import CompiledModelError, compile_network, write_torchscript
from .configs import bundle_configs, retarget
from .documents import LARGE_FILE_BYTES, MIN_CONTROLS
from .metadata import bundle_metadata, name_problem, pinned_version, required_packages
from .vendor import PACKAGE, config_modules, vendored_modules, write_package

__all__ = [
    "CompiledModelError",
    "ExportedBundle",
    "LARGE_FILE_BYTES",
    "MIN_CONTROLS",
    "PACKAGE",
    "bundle_configs",
    "bundle_metadata",
    "compile_network",
    "config_modules",
    "export_bundle",
    "name_problem",
    "pinned_version",
    "required_packages",
    "retarget",
    "shared_settings",
    "vendored_modules",
    "write_package",
    "write_torchscript",
]

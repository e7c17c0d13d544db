"""Stand-ins for the preprocessing batch runner's ``_run_job`` that kill their worker, for the mechanism tests.

Spawned pool workers import the module of the function they run: this one imports nothing at the top, so a worker
costs what a worker of ``axial_monai.preprocess`` costs (``bids_fixture`` imports MONAI, ANTs and pytest).
"""

from __future__ import annotations

import os

__all__ = ["DIE_ON", "run_job_or_die", "DIE_WRITING", "run_job_dying_while_writing"]


#: environment variable: comma-separated subjects whose preprocessing worker kills itself (see run_job_or_die)
DIE_ON = "AXIAL_MONAI_TEST_DIE_ON"


def run_job_or_die(job):
    """Stand-in for ``axial_monai.preprocess.batch._run_job`` in spawned workers: a worker given a job of a
    subject listed in ``$AXIAL_MONAI_TEST_DIE_ON`` is killed (SIGKILL, as by the kernel's OOM killer); any other
    job runs normally. Workers find this function by name, so the test patches the batch runner's ``_run_job`` with it.
    """
    import signal

    from axial_monai.preprocess import batch

    if job.scan.subject in os.environ.get(DIE_ON, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    return batch._run_job(job)


#: environment variable: comma-separated subjects whose worker is killed halfway through writing the output
DIE_WRITING = "AXIAL_MONAI_TEST_DIE_WRITING"


def run_job_dying_while_writing(job):
    """Stand-in for ``axial_monai.preprocess.batch._run_job`` in spawned workers: a worker given a job of a
    subject listed in ``$AXIAL_MONAI_TEST_DIE_WRITING`` writes its output image (the temporary file of
    :func:`~axial_monai.io.atomic_path`), cuts the written file to half its size and is killed (SIGKILL): a kill in
    the middle of the write. Any other job, and any other file it writes, goes on normally.
    """
    import signal

    import ants

    from axial_monai.preprocess import batch

    if job.scan.subject in os.environ.get(DIE_WRITING, "").split(","):
        write = ants.image_write

        def write_half_and_die(image, filename, *args, **kwargs):
            write(image, filename, *args, **kwargs)
            if ".tmp" in os.path.basename(filename):  # the output's temporary file, not a registration's scratch
                os.truncate(filename, os.path.getsize(filename) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

        ants.image_write = write_half_and_die  # this worker dies with its job: no other job sees the patch
    return batch._run_job(job)

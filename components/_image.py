"""The container image every component runs in on a cluster (ignored by the local SubprocessRunner).

Set ``EQUISEG_IMAGE`` before importing ``components`` to compile for another registry or tag
(``equiseg pipeline compile --image ...`` does this). The default matches ``PipelineConfig.image``.
"""

import os

from equiseg.config import PipelineConfig

BASE_IMAGE: str = os.environ.get("EQUISEG_IMAGE", PipelineConfig().image)

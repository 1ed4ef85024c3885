"""The container image every component runs in on a cluster (ignored by the local SubprocessRunner).

Set ``EQUISEG_IMAGE`` before importing ``components`` to compile for another registry or tag
(``equiseg pipeline compile --image ...`` does this). The default equals ``PipelineConfig.image`` (a test checks
it); it is spelt out here because components import only the standard library and kfp at module top.
"""

import os

DEFAULT_IMAGE = "ghcr.io/equiseg/equiseg:0.1.0"
BASE_IMAGE: str = os.environ.get("EQUISEG_IMAGE", DEFAULT_IMAGE)

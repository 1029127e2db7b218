"""ReconScope core: data, model, training, scoring, diagnostics and exports.

albumentations 2.x phones home at import unless told not to; nothing here may touch the
network, so the switch is set before any submodule can import it.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

"""verl plugin entry point (``verl.plugins`` group): imported by every ``import verl`` in every process.

It registers the ``care`` advantage estimator (idempotently) and installs the patches of ``recipe_care.patches``
(each applied right after its verl module is imported). It imports nothing heavy. verl swallows plugin import
errors, so ``python -m recipe_care.preflight`` imports this module directly and fails loudly instead.

The opt-in CPU backend (``recipe_care.cpu``) is imported only when ``CARE_CPU_BACKEND=1`` (set by the CPU scripts);
a GPU run never imports it.
"""

import os

from recipe_care import patches
from recipe_care.registration import register_care_estimator

register_care_estimator()
patches.install()

if os.environ.get("CARE_CPU_BACKEND") == "1":
    import recipe_care.cpu  # noqa: F401  (installs the CPU backend: platform, engine device, four patches)

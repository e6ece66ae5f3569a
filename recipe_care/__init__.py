"""CARE (Contrastive Anchored REflection) recipe for verl 0.9.1.

Importing this package is cheap: nothing here imports verl or torch. The verl glue lives in
``recipe_care._verl_plugin`` (loaded through the ``verl.plugins`` entry point) and ``recipe_care.verl_adapter``.
"""

__version__ = "0.1.0"

"""Reflection-Guided Resampling (RGR) inside verl's rollout (see ``docs/rgr.md``).

- ``recipe_care.rgr.core``: pure logic (selection, repair context and length cut, splice, metrics), no Ray;
- ``recipe_care.rgr.agent_loop``: the ``care_rgr`` continuation agent loop (registered on import);
- ``recipe_care.rgr.manager``: ``CareAgentLoopManager``, the ``agent_loop_manager_class`` that runs RGR.

The CPU tests' doubles (a scripted LLM server and reward) live in ``recipe_care.test_doubles.rgr_doubles``.

Nothing is imported here, so ``import recipe_care.rgr`` stays cheap.
"""

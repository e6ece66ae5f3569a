"""One verifier per benchmark. Each module exposes ``verify(response, gt, info, mode) -> Verdict``.

``response`` is the decoded model output (a ``str``, possibly empty), ``gt`` the published answer (non-empty
``str``), ``info`` the normalised ``reward_fns.schema.ExtraInfo`` and ``mode`` ``"train"`` or ``"official"``.
"""

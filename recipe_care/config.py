"""Configuration dataclasses for CARE, one per mechanism (TRL style).

Every field documents its default and where the default comes from:
- [code] the authors' released code (yongxinwang-ai/CARE @ 8c6045c, ``examples/config.yaml`` / ``CareCfg``),
- [paper] the paper or its abstract,
- [ours] a decision of this project (docs/algorithm.md, "Deviations"; summarised in the README).

``CareConfig.from_omegaconf(config.algorithm.care)`` builds the dataclass from the Hydra node; unknown keys raise
a clear error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from recipe_care.log import warn_once

RESCUE_MODES = ("off", "faithful", "small")
TOKEN_WEIGHTINGS = ("region", "uniform")
ANCHOR_RULES = ("shortest", "random")
SIMILARITIES = ("auto", "hidden", "ngram")


def config_get(node: Any, *path: str, default: Any = None) -> Any:
    """``node.<path[0]>.<path[1]>…`` of an OmegaConf node, a mapping or a plain object; ``default`` where a level is
    missing or null. The recipe's one way to read verl's config (which may be a ``DictConfig``, a dict in tests, or a
    dataclass built by ``omega_conf_to_dataclass``).

    >>> config_get({"algorithm": {"adv_estimator": "care", "care": None}}, "algorithm", "adv_estimator")
    'care'
    >>> config_get({"algorithm": {"care": None}}, "algorithm", "care", "K", default=4)
    4
    """
    for key in path:
        if node is None:
            return default
        getter = getattr(node, "get", None)
        node = getter(key, None) if callable(getter) else getattr(node, key, None)
    return default if node is None else node


def is_care_run(config: Any) -> bool:
    """Whether a full verl config trains with ``algorithm.adv_estimator=care``."""
    return is_care_estimator(config_get(config, "algorithm", "adv_estimator"))


def is_care_estimator(adv_estimator: Any) -> bool:
    """Whether an ``adv_estimator`` value (a string or verl's ``AdvantageEstimator`` member) names ``care``."""
    return str(getattr(adv_estimator, "value", adv_estimator)) == "care"


# Accepted spellings from the authors' config, mapped to ours.
_ALIASES = {"token_weighting": {"region_weighted": "region", "none": "uniform"}}


def _mapping_to_dict(node: Any) -> dict:
    """Plain dict from an OmegaConf node, a mapping or None (OmegaConf is imported lazily)."""
    if node is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf ships with verl
        pass
    if isinstance(node, Mapping):
        return dict(node)
    raise TypeError(f"expected a mapping for the CARE config, got {type(node).__name__}")


def _build(cls, node: Any, where: str):
    values = _mapping_to_dict(node)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)} (check the spelling in your config)"
        )
    for key, aliases in _ALIASES.items():
        if key in values and values[key] in aliases:
            values[key] = aliases[values[key]]
    return cls(**values)


@dataclass
class CareConfig:
    """The CARE advantage (``algorithm.care`` in the verl config). Symbols follow the paper."""

    K: int = 4
    """Target number of hard negatives per subgroup. Default 4 [code ``care.K``; paper ablation "K=4"]."""

    M: int = 6
    """Pre-selection pool: the M failures nearest to the anchor before the max-min diversity step. Default 6
    [code ``care.M``]. ``M=K`` gives the pure "K nearest" rule. ``M < K`` is allowed, as in the authors' code
    (pool ``min(M, failures)``, ``K' = min(K, pool) <= M``, equalization ``sqrt(K/K')``), with one warning."""

    s: float = 0.5
    """Negative-only scale: failures in the subgroup get ``-s*|z|``. Default 0.5 [code ``care.neg_scale_s``]."""

    eps: float = 1e-6
    """z-score epsilon: ``z = (r - mu) / (sigma + eps)``, population std. Default 1e-6 [code ``care.eps``]."""

    equalize: bool = True
    """Update-size equalization: multiply the subgroup's advantages by ``sqrt(K/K')``. Default on
    [code ``care.equalize``]."""

    rescue: str = "faithful"
    """All-negative rescue: ``"off"`` | ``"faithful"`` (pseudo-rewards z-scored, so delta cancels, as the authors'
    code does) | ``"small"`` (advantages of size delta: +delta for the pseudo-anchor, -s*delta/k per negative,
    times the equalization factor). Default ``"faithful"`` [code ``care.rescue.enable=true``; "small" is the
    paper's "small pseudo-contrast" reading, docs/algorithm.md#all-negative-rescue]."""

    rescue_delta: float = 0.1
    """Pseudo-reward magnitude delta of the rescue. Default 0.1 [code ``care.rescue.delta``]."""

    refl_scale: Optional[float] = None
    """s_refl: scale of an RGR row that still fails. Default ``None``, which means ``s/2``
    [code ``rgr.s_refl: null``]."""

    gamma_pos: float = 0.005
    """Weight of think tokens of correct rollouts in region weighting (answer tokens weigh 1, think tokens of
    failures 0). Default 0.005 [code ``care.gamma_pos``]."""

    token_weighting: str = "region"
    """``"region"`` (region-weighted token advantages, divided by the row's weight sum) or ``"uniform"`` (the
    sequence advantage broadcast to every response token, as GRPO). Default ``"region"``
    [code ``region_weighted``]."""

    anchor: str = "shortest"
    """Anchor rule: ``"shortest"`` (fewest think tokens, ties: fewer answer tokens, then lower row index; a missing,
    empty or blank think span counts as the whole response) or ``"random"`` (a uniformly random correct rollout, a
    new draw every training step; the paper's ablation). Default ``"shortest"`` [paper; code
    ``_select_anchor_index``; blank spans: ours, docs/algorithm.md#anchor]."""

    seed: int = 0
    """Seed for ``anchor="random"`` (combined with the trainer's ``global_steps`` so each step draws anew). Default 0
    [ours]."""

    similarity: str = "auto"
    """Which rationale embedding selects hard negatives: ``"hidden"`` (policy last-layer hidden states mean-pooled
    over ``<think>`` tokens, the paper's choice; needs the embedding worker extension), ``"ngram"`` (hashed token
    n-gram profile of the ``<think>`` span; available everywhere, also at rollout time for RGR), or ``"auto"``
    (hidden states when the batch carries them, else n-grams with one warning). Default ``"auto"`` [ours]."""

    ngram_n: int = 3
    """n of the token n-gram similarity fallback. Default 3 [ours]."""

    ngram_dim: int = 512
    """Hash buckets of the n-gram profile. Default 512 [ours]."""

    def __post_init__(self) -> None:
        if int(self.K) < 1:
            raise ValueError(f"care.K must be >= 1, got {self.K}")
        if int(self.M) < 1:
            raise ValueError(f"care.M must be >= 1, got {self.M}")
        self.K, self.M = int(self.K), int(self.M)
        if self.M < self.K:
            warn_once(
                ("M<K", self.K, self.M),
                f"CARE: care.M={self.M} is smaller than care.K={self.K}: the pool holds at most M failures, so a "
                f"subgroup never has more than {self.M} hard negatives (K' <= M) and its advantages are always scaled "
                f"up by sqrt(K/K') >= {math.sqrt(self.K / self.M):.3g} (as the authors' code does). Set "
                "care.M >= care.K unless this is intended.",
            )
        for name in ("s", "eps", "rescue_delta", "gamma_pos"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"care.{name} must be a finite number >= 0, got {getattr(self, name)}")
            setattr(self, name, value)
        if self.eps <= 0:
            raise ValueError(f"care.eps must be > 0, got {self.eps}")
        if self.refl_scale is not None:
            self.refl_scale = float(self.refl_scale)
            if not math.isfinite(self.refl_scale) or self.refl_scale < 0:
                raise ValueError(f"care.refl_scale must be null or >= 0, got {self.refl_scale}")
        for name, allowed in (
            ("rescue", RESCUE_MODES),
            ("token_weighting", TOKEN_WEIGHTINGS),
            ("anchor", ANCHOR_RULES),
            ("similarity", SIMILARITIES),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) and name == "rescue":  # `rescue: false` in YAML
                value = "faithful" if value else "off"
                self.rescue = value
            if value not in allowed:
                raise ValueError(f"care.{name}={value!r} is not one of {allowed}")
        if self.ngram_n < 1 or self.ngram_dim < 8:
            raise ValueError("care.ngram_n must be >= 1 and care.ngram_dim >= 8")

    @property
    def s_refl(self) -> float:
        """Scale of a failed RGR row: ``refl_scale`` or ``s/2``."""
        return self.s / 2.0 if self.refl_scale is None else self.refl_scale

    @classmethod
    def from_omegaconf(cls, node: Any) -> "CareConfig":
        """Build from ``config.algorithm.care`` (DictConfig, dict or None → defaults)."""
        return _build(cls, node, "algorithm.care")


@dataclass
class RgrConfig:
    """Reflection-Guided Resampling (``algorithm.rgr`` in the verl config; read by
    ``recipe_care.rgr.manager.CareAgentLoopManager``, see ``docs/rgr.md``).

    The scale of a repaired row that still fails (the authors' ``rgr.s_refl``) is a property of the advantage and
    lives in ``algorithm.care.refl_scale`` (:class:`CareConfig`).
    """

    enable: bool = False
    """Run RGR during training rollouts (validation batches are never repaired). Default off in a stock verl config;
    the recipe's ``care_trainer.yaml`` turns it on as the authors' script does [code ``rgr.enable``]."""

    temperature: float = 0.6
    """Sampling temperature of the repair generation. Default 0.6 [code ``rgr.sampling.temperature``]."""

    top_p: float = 0.95
    """top-p of the repair generation. Default 0.95 [code ``rgr.sampling.top_p``]."""

    max_tokens: int = 512
    """Maximum new tokens of the repair (the new answer). The repair context (kept rationale + cue + tags) is cut so
    that context + ``max_tokens`` fits ``rollout.response_length``. Default 512 [code ``rgr.sampling.max_tokens``]."""

    max_cue_tokens: int = 64
    """The cue is tokenized and truncated to this many tokens (0: no cue). Default 64 [code
    ``max_critique_tokens``]; the default cue is shorter, so it is not truncated."""

    cue: str = "\n<repair>\n- Mistake:\n- Fix:\n- Corrected final answer:\n</repair>\n"
    """The repair cue inserted just before ``</think>``. Default: the structured cue above [code, template
    ``structured``, the only one the authors implement]."""

    def __post_init__(self) -> None:
        if not isinstance(self.enable, bool):
            raise ValueError(f"rgr.enable must be true or false, got {self.enable!r}")
        self.temperature, self.top_p = float(self.temperature), float(self.top_p)
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"rgr.temperature must be a finite number >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"rgr.top_p must be in (0, 1], got {self.top_p}")

        def whole(name: str, value: Any, low: int) -> int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            ok = ok or (isinstance(value, float) and value.is_integer())
            if not ok or int(value) < low:
                raise ValueError(f"rgr.{name} must be an integer >= {low}, got {value!r}")
            return int(value)

        self.max_tokens = whole("max_tokens", self.max_tokens, 1)
        self.max_cue_tokens = whole("max_cue_tokens", self.max_cue_tokens, 0)
        if not isinstance(self.cue, str):
            raise ValueError(f"rgr.cue must be a string, got {type(self.cue).__name__}")

    @classmethod
    def from_omegaconf(cls, node: Any) -> "RgrConfig":
        """Build from ``config.algorithm.rgr`` (DictConfig, dict or None → defaults, i.e. RGR off)."""
        return _build(cls, node, "algorithm.rgr")

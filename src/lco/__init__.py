"""lco — stable RL post-training of LLMs with Logits Convex Optimization (LCO).

The public objective API (pure functions of tensors; equation numbers refer to
"Stabilizing Policy Optimization via Logits Convexity"):

>>> import lco
>>> z_star = lco.optimal_logits(old_logits, advantages, beta=1.0)       # eq. 7
>>> loss = lco.lco_kld(logits, old_logits, advantages, beta=1.0, mask=m)  # eq. 10

``lco.<name>`` is every public name of :mod:`lco.objectives`, the advantage estimators of
:mod:`lco.advantages`, ``LCOConfig`` and ``LCOTrainer``.
"""

from ._lazy import lazy_exports
from .objectives import __all__ as _OBJECTIVE_NAMES  # the names only: lco.objectives imports lazily too

__version__ = "0.1.0"

# Every name is imported on first use (PEP 562), so that `import lco` — which every `lco`
# command pays, even `lco --help` — does not load torch, transformers or TRL.
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "advantages": (
            "NORMALIZATIONS",
            "dpo_advantages",
            "gae",
            "group_advantages",
            "logprob_advantages",
            "normalize_advantages",
            "ppo_gae_advantages",
            "ppo_token_rewards",
            "reinforce_advantages",
            "sparse_advantages",
            "whiten_advantages",
        ),
        "objectives": tuple(_OBJECTIVE_NAMES),  # every public name of lco.objectives
        "trainer": ("LCOConfig", "LCOTrainer"),  # the trainer imports TRL and transformers
    },
    submodules=("theory",),
)

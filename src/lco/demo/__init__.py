"""``lco demo``: the paper's math-reasoning experiment in miniature, on a laptop, without hub access.

Read :mod:`lco.demo.recipe` first: it runs the stages in order —

- :mod:`~lco.demo.warmup` — tiny Qwen2 models built from a config, SFT warm-up (TRL ``SFTTrainer``);
- :mod:`~lco.demo.reward_model` — verifier-labelled pairs, φ_DPO with TRL ``DPOTrainer``;
- :mod:`~lco.demo.rl` — one ``LCOTrainer`` run per method × seed (× learning rate);
- :mod:`~lco.demo.evaluate` — pass@1 with :mod:`lco.eval`;
- :mod:`~lco.demo.report` — ``results.json``, ``report.md``, figures;

with :mod:`~lco.demo.settings` (every hyper-parameter), :mod:`~lco.demo.methods` (the table's
rows), :mod:`~lco.demo.cache` (stages on disk, keyed by their inputs) and :mod:`~lco.demo.pool`
(independent stages on several processes). See docs/demo.md.
"""

from .._lazy import lazy_exports

# imported on first use (PEP 562): `lco demo --help` must not load the whole recipe (TRL, torch)
__all__, __getattr__, __dir__ = lazy_exports(
    __name__, {"recipe": ("run_demo",), "settings": ("DemoSettings", "profile_settings")}
)

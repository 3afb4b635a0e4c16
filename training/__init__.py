"""How the networks of :mod:`models` are trained, measured and shown: the Lightning module
(:mod:`training.module`), the data modules (:mod:`training.data`), callbacks and TensorBoard
figures, what the entry points share (:mod:`training.cli`), distributed launch, sweep summaries,
the config resolvers, safe checkpoint reading and the results store.

Importing the package imports nothing heavy: its config resolvers are registered here (they are
needed before Hydra composes a config, and cost no torch), everything else loads where it is used.
"""

from . import resolvers  # noqa: F401  (${coalesce:}, ${run_stamp:}, ${about:} before Hydra composes a config)

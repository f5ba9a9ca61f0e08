"""What every scorer module contributes to the registry: ``FACTORIES``, a mapping from the
assert type it implements (without ``not-``) to a :data:`Factory` that builds a scorer for one
assertion. The registry (:mod:`tether.evals.scorers.registry`) applies ``not-``, ``threshold``,
``weight`` and ``metric`` the same way for every type."""

from __future__ import annotations

from collections.abc import Callable

from tether.evals.types import Assertion, Scorer, ScoringContext

Factory = Callable[[Assertion, ScoringContext], Scorer]

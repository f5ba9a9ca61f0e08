"""Scorers: one small protocol (:class:`tether.evals.types.Scorer`) and a registry
(:mod:`tether.evals.scorers.registry`) of every assert type tether runs."""

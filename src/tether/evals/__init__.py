"""Evaluation: measure a feature on a dataset before a change ships, and on live traffic after.

* :mod:`tether.evals.types`       Case, Assertion, Output, Score, the Scorer protocol,
                                  CaseResult, EvalRun
* :mod:`tether.evals.datasets`    JSONL / CSV / YAML rows (parsed by :mod:`.rows`) and promptfoo
                                  configs (:mod:`.promptfoo`) as datasets
* :mod:`tether.evals.from_traces` stored traces as dataset rows (``tether datasets from-traces``)
* :mod:`tether.evals.scorers`     the registry: promptfoo's asserts, JSON, numeric, guard, custom
                                  and model-graded scorers (the judge: :mod:`.judge`)
* :mod:`tether.evals.runner`      runs a feature (or one of its variants) over a dataset, through
                                  its full pipeline, and streams each result to the store
                                  (``--model-cache``: :mod:`.modelcache`, on :mod:`.cache`)
* :mod:`tether.evals.compare`     pairs two runs' items: McNemar's exact test and a paired
                                  bootstrap; regressed / improved / no significant change
* :mod:`tether.evals.report`      terminal, HTML (:mod:`.report_html`), JSON and JUnit reports
* :mod:`tether.evals.online`      scorers on a sample of live calls, after the answer went out

Nothing here runs at import; the CLI is ``tether eval`` and ``tether datasets``.
"""

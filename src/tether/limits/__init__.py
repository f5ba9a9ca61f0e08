"""Rate limits (a feature's ``rate_limits``): token buckets in the shared state.

    rate_limits:
      key:      {rpm: 600}               # per gateway API key
      user:     {rpm: 10, tpm: 20000}    # per end user
      tenant:   {tpm: 200000}            # per tenant
      feature:  {rpm: 1000}              # the feature as a whole
      upstream: {rpm: 500, tpm: 90000}   # pace the calls made to each model of the chain

The first four are checked before the call (:class:`RateLimitStage`, slot ``budget``, ahead of
the budget's reservation so a refused call reserves nothing): over a limit the caller gets
:class:`~tether.errors.RateLimitExceeded` (the gateway's 429 with ``Retry-After``), never the
failure path. ``upstream`` does not refuse callers: it paces the calls tether makes to an
upstream (:class:`Paced`, a model wrapper) so that a burst does not turn into upstream 429s.
"""

from __future__ import annotations

from tether.limits.stage import RateLimitStage, stages
from tether.limits.upstream import Paced, upstream_wrapper

__all__ = ["Paced", "RateLimitStage", "stages", "upstream_wrapper"]

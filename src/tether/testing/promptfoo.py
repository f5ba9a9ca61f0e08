"""Running promptfoo beside tether without it reaching the internet or the user's home (how
tether's parity tests and ``bench/eval_throughput.py`` run it)::

    subprocess.run([promptfoo, "eval", "-c", config], env=offline_env(tmp_path / "home"))
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tether.testing.upstream import refused_base_url

# the caller's own settings of these would send promptfoo elsewhere
_DROPPED = ("OPENAI_", "PROMPTFOO_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


def offline_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a promptfoo process kept offline and out of the user's home: no
    telemetry, update check, sharing or remote generation; its config, database, logs and
    cache under ``home``; python asserts run by this interpreter. Even with telemetry off it
    posts one "telemetry disabled" event: every HTTPS request goes to a proxy on a loopback
    port where nothing listens, so that one fails at once (loopback is direct). ``extra``
    adds or overrides variables."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_DROPPED)}
    env.update(
        PROMPTFOO_DISABLE_TELEMETRY="1",
        PROMPTFOO_DISABLE_UPDATE="1",
        PROMPTFOO_DISABLE_SHARING="1",
        PROMPTFOO_DISABLE_REMOTE_GENERATION="1",
        PROMPTFOO_CONFIG_DIR=str(home),
        PROMPTFOO_LOG_DIR=str(home / "logs"),
        PROMPTFOO_CACHE_PATH=str(home / "cache"),
        PROMPTFOO_CACHE_ENABLED="false",
        # its per-run debug file (every request, ~2 KB each) can crash it at exit ("write after
        # end" in winston)
        PROMPTFOO_DISABLE_DEBUG_LOG="1",
        PROMPTFOO_PYTHON=sys.executable,
        HTTPS_PROXY=refused_base_url().removesuffix("/v1"),
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra)
    return env

"""Is the Hugging Face Hub usable right now? Asked once, so a missing dataset fails at once.

Without the offline variables, `datasets` and `transformers` retry an unreachable Hub for about 24 s
per file before they give up; one socket probe answers the same question in milliseconds.
"""

import functools
import os
import socket
from urllib.parse import urlparse

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROBE_TIMEOUT_S = 3.0


def hub_offline_mode() -> bool:
    """True when the user switched the Hub off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    import datasets.config
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


@functools.cache
def hub_reachable() -> bool:
    """One TCP connection to the Hub endpoint; behind a proxy we cannot tell, so trust the libraries."""
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    import huggingface_hub.constants

    endpoint = urlparse(huggingface_hub.constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_unavailable_reason() -> str | None:
    """Why the Hub cannot be asked (None when it can): used in the missing-dataset message."""
    if hub_offline_mode():
        return "offline mode is on (HF_HUB_OFFLINE=1 or HF_DATASETS_OFFLINE=1)"
    if not hub_reachable():
        return "the Hugging Face Hub cannot be reached from this machine"
    return None

"""HTTP to the servers the harness starts on 127.0.0.1, never through a proxy.

urllib honours HTTP_PROXY/HTTPS_PROXY from the environment, and a CI machine behind a proxy
would send "127.0.0.1:port" to it; this opener ignores those settings.
"""

from __future__ import annotations

import urllib.request

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def urlopen(request: str | urllib.request.Request, timeout: float):
    """`urllib.request.urlopen` without proxies (raises the same errors)."""
    return _opener.open(request, timeout=timeout)

"""leakware: find memory leaks in running web services, one sampled request at a time.

Add a middleware (`leakware.wsgi`, `leakware.asgi`, `leakware.flask`), let it measure a
fraction of requests, and read the verdicts with ``leakware report``.
"""

from leakware.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "__version__"]

__version__ = "0.1.0"

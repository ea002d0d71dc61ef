"""Optional integrations. Each module needs its extra; the core never imports them:

- :mod:`errands.contrib.prometheus` (``pip install 'errands[prometheus]'``)
- :mod:`errands.contrib.opentelemetry` (``pip install 'errands[otel]'``)
"""

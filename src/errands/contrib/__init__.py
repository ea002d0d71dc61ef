"""Optional integrations. Each module needs its extra; the core never imports them:

- ``prometheus`` (``pip install 'errands[prometheus]'``)
- ``opentelemetry`` (``pip install 'errands[otel]'``)
"""

"""Optional integrations. Each module needs its extra; the core never imports them:

- ``prometheus`` (``pip install 'errands[prometheus]'``)
- ``opentelemetry`` (``pip install 'errands[otel]'``)

They are middleware and collectors built on the public API (top-level modules and the admin
``Client``).
"""

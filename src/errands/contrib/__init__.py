"""Optional integrations. Each module needs its extra; the core never imports them:

- ``prometheus`` (``pip install 'errands[prometheus]'``)
- ``opentelemetry`` (``pip install 'errands[otel]'``)
- ``sqlalchemy`` (``pip install 'sqlalchemy>=2'``), ``django``: enqueue with the transaction

They are middleware and collectors built on the public API (top-level modules and the admin
``Client``).
"""

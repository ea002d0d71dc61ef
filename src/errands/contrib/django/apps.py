"""The Django app of the outbox: add ``"errands.contrib.django"`` to ``INSTALLED_APPS`` and run
``manage.py migrate`` to create ``errands_outbox``."""

from __future__ import annotations

from django.apps import AppConfig


class ErrandsConfig(AppConfig):  # type: ignore[misc]
    name = "errands.contrib.django"
    label = "errands"
    verbose_name = "errands outbox"
    default_auto_field = "django.db.models.BigAutoField"

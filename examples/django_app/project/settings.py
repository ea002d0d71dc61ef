"""The smallest Django project that serves the example's two views (no database)."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "an-example-only-secret-key")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
ROOT_URLCONF = "project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

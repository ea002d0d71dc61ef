"""The randomized fault soak (``make test-soak``): see ``driver.py`` and docs/reliability.md."""

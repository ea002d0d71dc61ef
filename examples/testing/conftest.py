# errands' pytest plugin is opt-in: load it here (or run `pytest -p errands.testing`).
pytest_plugins = ["errands.testing"]

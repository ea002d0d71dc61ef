"""The worker process: ``python -m worker`` from this directory (Ctrl-C stops it gracefully)."""

import logging

from jobs import pool

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    pool.run()

"""The worker process (it relays the outbox too): ``python -m worker`` from this directory."""

import logging

from jobs import pool

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    pool.run()

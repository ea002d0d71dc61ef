"""Flow control: limit specs (:class:`Rate`, :class:`Concurrency`) and their encoding for the
fetch script (``store/lua/lib/limits.lua``). Pure: no I/O."""

from .spec import (
    Concurrency,
    Limit,
    Rate,
    check_partition,
    compile_limits,
    describe_limit,
    limit_from_dict,
    limit_to_dict,
    parse_limit,
)

__all__ = [
    "Concurrency",
    "Limit",
    "Rate",
    "check_partition",
    "compile_limits",
    "describe_limit",
    "limit_from_dict",
    "limit_to_dict",
    "parse_limit",
]

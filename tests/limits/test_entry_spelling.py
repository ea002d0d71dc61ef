"""lib/limits.lua spells index entries and turns with one sprintf per ten numbers in a row
(lim_speller): the same strings as '%016d' / '%d' of each number, in any order, at the edges
of the fast path (10^15, 2^53) and past them."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis

from errands.store.luasource import _expand

CHECK = """
local bad = {}
for i = 1, #ARGV, 2 do
  local score, turn = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local v = score + LIM_OFFSET
  local want = 'p\\0' .. ((v >= 0 and v < 2^53) and string.format('%016d', v)
    or string.format('%016.0f', v)) .. '\\0id'
  if lim_entry('p', score, 'id') ~= want then
    bad[#bad + 1] = 'entry ' .. ARGV[i]
  end
  if lim_turn_str(turn) ~= string.format('%d', turn) then
    bad[#bad + 1] = 'turn ' .. ARGV[i + 1]
  end
end
return bad
"""


def _source() -> str:
    lua = resources.files("errands.store").joinpath("lua")
    lines: list[tuple[str, bool]] = []  # the whole lib, its functions CHECK uses or not
    _expand(lua, lua.joinpath("lib", "limits.lua"), {"limits"}, lines, in_lib=True)
    return "\n".join(line for line, _ in lines) + "\n" + CHECK


async def test_entries_and_turns_are_spelt_as_sprintf_would(redis: Redis) -> None:
    offset = 2**52
    scores = [0, 1, 9, 10, 11, 19, 20, 99, 100, 12345, -1, -9, -10, -11, -(2**42) * 3 + 17]
    scores += [10**15 - offset + d for d in range(-12, 12)]  # the fast path's lower edge
    scores += [2**53 - offset + d for d in range(-12, 1)]  # its upper edge
    scores += [2**42 * 1000 + 5, -(2**42) * 1000 + 5, -(2**52) + 3]  # priorities' ends
    turns = [10, 11, 19, 20, 21, 99, 100, 101, 109, 110, 12345, 12346, 12350, 2**53 - 1]
    turns += [*range(990, 1012), 9, 5, 10**15 + 7]
    n = max(len(scores), len(turns))
    pairs = [(scores[i % len(scores)], turns[i % len(turns)]) for i in range(n)]
    args = [str(x) for pair in pairs for x in pair]
    assert await redis.eval(_source(), 0, *args) == []  # type: ignore[misc]

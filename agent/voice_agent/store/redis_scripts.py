"""The Lua scripts that make session ownership atomic. Key names come from redis_keys.

Each script is the only writer of the state it guards, so the invariants hold without locks:
an agent's load score always equals the size of its session set, a session has exactly one
owner, and its epoch (fencing token) increases on every change of owner, so a write from an
agent that lost the session (declared dead, then came back) is refused instead of applied.

An agent counts as alive when its heartbeat key exists AND its inbox channel has a subscriber.
The second test is what makes takeover after kill -9 instant: the kernel closes the dead
process's sockets, Redis drops its subscription, and NUMSUB reads 0 long before the heartbeat
TTL runs out.
"""

from __future__ import annotations

from voice_agent.store import keys

_ALIVE = """
local function alive(prefix, id)
  local a = prefix .. id
  return redis.call('EXISTS', a .. ':alive') == 1
     and redis.call('PUBSUB', 'NUMSUB', a .. ':inbox')[2] > 0
end
local function takes_more(prefix, id, load)
  local info = redis.call('HMGET', prefix .. id, 'capacity', 'draining')
  if info[2] == '1' then return 0 end
  if redis.call('PUBSUB', 'NUMSUB', prefix .. id .. ':inbox')[2] == 0 then return 0 end
  return math.max(0, (tonumber(info[1]) or 0) - load)
end
local function rescore(agents, prefix, id)
  local n = redis.call('SCARD', prefix .. id .. ':sessions')
  if redis.call('ZSCORE', agents, id) then redis.call('ZADD', agents, n, id) end
  return n
end
"""

# KEYS: agents zset, session hash, sessions index. ARGV: agent prefix, session id, record JSON,
# expires_at ms, now ms, events channel. -> {'ok', owner, epoch} | {'full'} | {'exists'}
ALLOCATE = (
    _ALIVE
    + """
local agents, skey, index = KEYS[1], KEYS[2], KEYS[3]
local prefix, sid, data, expire_ms, now_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', skey) == 1 then return {'exists'} end
redis.call('ZREMRANGEBYSCORE', index, '-inf', now_ms)
local members = redis.call('ZRANGE', agents, 0, -1, 'WITHSCORES')
local chosen = nil
for i = 1, #members, 2 do
  local id, load = members[i], tonumber(members[i + 1])
  if redis.call('EXISTS', prefix .. id .. ':alive') == 0 then
    redis.call('ZREM', agents, id)
  elseif takes_more(prefix, id, load) > 0 then
    chosen = id
    break
  end
end
if not chosen then return {'full'} end
redis.call('SADD', prefix .. chosen .. ':sessions', sid)
rescore(agents, prefix, chosen)
redis.call('HSET', skey, 'data', data, 'owner', chosen, 'epoch', 1, 'assigned_ms', now_ms)
redis.call('PEXPIREAT', skey, expire_ms)
redis.call('ZADD', index, expire_ms, sid)
redis.call('PUBLISH', ARGV[6], sid)
return {'ok', chosen, 1}
"""
)

# KEYS: agents zset. ARGV: agent prefix, me. Read only.
# -> the free slots of the pool's other agents that ALLOCATE or CLAIM would use (alive, listening on
# their inbox, not draining): how many calls a draining agent can move away right now.
ROOM = (
    _ALIVE
    + """
local agents, prefix, me = KEYS[1], ARGV[1], ARGV[2]
local members = redis.call('ZRANGE', agents, 0, -1, 'WITHSCORES')
local free = 0
for i = 1, #members, 2 do
  local id, load = members[i], tonumber(members[i + 1])
  if id ~= me and redis.call('EXISTS', prefix .. id .. ':alive') == 1 then
    free = free + takes_more(prefix, id, load)
  end
end
return free
"""
)

# KEYS: session hash, agents zset. ARGV: agent prefix, me, session id, my capacity,
# draining ('1'/'0'), now ms, events channel.
# -> {'mine', epoch, data} | {'claimed', epoch, data} | {'remote', owner} | {'missing'} | {'refused', why}
CLAIM = (
    _ALIVE
    + """
local skey, agents = KEYS[1], KEYS[2]
local prefix, me, sid, cap, draining, now_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local s = redis.call('HMGET', skey, 'owner', 'epoch', 'ended')
if not s[2] or s[3] == '1' then return {'missing'} end
local owner, epoch = s[1] or '', tonumber(s[2])
local mine = prefix .. me .. ':sessions'
if owner == me and redis.call('SISMEMBER', mine, sid) == 1 then
  return {'mine', epoch, redis.call('HGET', skey, 'data')}
end
if owner ~= '' and owner ~= me and redis.call('SISMEMBER', prefix .. owner .. ':sessions', sid) == 1
   and alive(prefix, owner) then
  return {'remote', owner}
end
if draining == '1' then return {'refused', 'draining'} end
if redis.call('SCARD', mine) >= cap then return {'refused', 'full'} end
if owner ~= '' and owner ~= me and redis.call('SREM', prefix .. owner .. ':sessions', sid) == 1 then
  rescore(agents, prefix, owner)
end
epoch = epoch + 1
redis.call('HSET', skey, 'owner', me, 'epoch', epoch, 'assigned_ms', now_ms)
redis.call('SADD', mine, sid)
redis.call('ZADD', agents, redis.call('SCARD', mine), me)
redis.call('PUBLISH', ARGV[7], sid)
return {'claimed', epoch, redis.call('HGET', skey, 'data')}
"""
)

# KEYS: session hash, sessions index, my session set, agents zset.
# ARGV: me, epoch, record JSON, expires_at ms, now ms, recreate ('1'/'0'), session id, events channel.
# -> 'ok' | 'fenced' (another agent owns it now) | 'ended' | 'missing'
SAVE = """
local skey, index, mine, agents = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local me, epoch, data, expire_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now_ms, recreate, sid = ARGV[5], ARGV[6], ARGV[7]
local s = redis.call('HMGET', skey, 'owner', 'epoch', 'ended')
if s[3] == '1' then return 'ended' end
if not s[2] then
  if recreate ~= '1' then return 'missing' end
  redis.call('HSET', skey, 'owner', me, 'epoch', epoch, 'assigned_ms', now_ms)
  redis.call('SADD', mine, sid)
  redis.call('ZADD', agents, redis.call('SCARD', mine), me)
elseif s[1] ~= me or s[2] ~= epoch then
  return 'fenced'
end
redis.call('HSET', skey, 'data', data)
redis.call('PEXPIREAT', skey, expire_ms)
redis.call('ZADD', index, expire_ms, sid)
redis.call('PUBLISH', ARGV[8], sid)
return 'ok'
"""

# KEYS: my session set, agents zset, session hash. ARGV: me, session id, epoch.
# Gives a session up (call suspended): it stays resumable by anyone, held by no one.
RELEASE = """
local s = redis.call('HMGET', KEYS[3], 'owner', 'epoch')
if s[1] and (s[1] ~= ARGV[1] or s[2] ~= ARGV[3]) then return 0 end
local n = redis.call('SREM', KEYS[1], ARGV[2])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], redis.call('SCARD', KEYS[1]), ARGV[1])
end
return n
"""

# KEYS: session hash, sessions index, agents zset. ARGV: agent prefix, session id, tombstone ms,
# events channel.
# Ends a session for good, leaving a short tombstone so a late save cannot resurrect it.
# -> previous owner ('' if none) | false when unknown or already ended
END = (
    _ALIVE
    + """
local skey, index, agents = KEYS[1], KEYS[2], KEYS[3]
local prefix, sid = ARGV[1], ARGV[2]
local s = redis.call('HMGET', skey, 'owner', 'epoch', 'ended')
if not s[2] or s[3] == '1' then return false end
local owner = s[1] or ''
redis.call('HSET', skey, 'ended', '1')
redis.call('HDEL', skey, 'data')
redis.call('PEXPIRE', skey, ARGV[3])
redis.call('ZREM', index, sid)
if owner ~= '' and redis.call('SREM', prefix .. owner .. ':sessions', sid) == 1 then
  rescore(agents, prefix, owner)
end
redis.call('PUBLISH', ARGV[4], sid)
return owner
"""
)


# How long an ended session's tombstone stays (a late save from its call must find it).
TOMBSTONE_MS = 60_000


def end_call(pool: str, session_id: str) -> tuple[list[str], list[str | int]]:
    """END's keys and arguments: the agents' store and the operator's sessions API end sessions alike."""
    script_keys = [keys.session_key(pool, session_id), keys.sessions_index_key(pool), keys.agents_key(pool)]
    return script_keys, [keys.agent_prefix(pool), session_id, TOMBSTONE_MS, keys.session_events(pool)]


# KEYS: agent hash, alive key, my session set, agents zset, pools set.
# ARGV: me, pool, url, capacity, draining, ttl ms, now ms, session key prefix, start grace ms,
# then the ids of sessions this agent runs. Registers/refreshes the agent and reconciles its
# session set with what it actually runs (self-healing after a Redis restart or a lost message).
# -> {lapsed, missing}: lapsed is 1 when the alive key had expired (the pool could have taken this
# agent for dead), missing the ids of sessions it runs whose record is gone from Redis (data lost):
# the agent rewrites them.
HEARTBEAT = """
local akey, alive, mine, agents, pools = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local me, pool, url, cap, draining = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, now = tonumber(ARGV[6]), tonumber(ARGV[7])
local sprefix, grace = ARGV[8], tonumber(ARGV[9])
redis.call('HSET', akey, 'id', me, 'pool', pool, 'url', url, 'capacity', cap, 'draining', draining,
           'seen_ms', now)
redis.call('HSETNX', akey, 'started_ms', now)
redis.call('PEXPIRE', akey, ttl * 100)
local lapsed = redis.call('EXISTS', alive) == 0 and 1 or 0
redis.call('SET', alive, now, 'PX', ttl)
redis.call('SADD', pools, pool)
local keep, missing = {}, {}
for i = 10, #ARGV do
  local sid = ARGV[i]
  keep[sid] = true
  local h = redis.call('HMGET', sprefix .. sid, 'owner', 'ended')
  if h[1] == me and h[2] ~= '1' then redis.call('SADD', mine, sid) end
  if not h[1] then missing[#missing + 1] = sid end
end
for _, sid in ipairs(redis.call('SMEMBERS', mine)) do
  if not keep[sid] then
    local h = redis.call('HMGET', sprefix .. sid, 'owner', 'assigned_ms', 'ended')
    if h[1] ~= me or h[3] == '1' or (tonumber(h[2]) or 0) < now - grace then
      redis.call('SREM', mine, sid)
    end
  end
end
redis.call('PEXPIRE', mine, ttl * 100)
local n = redis.call('SCARD', mine)
redis.call('ZADD', agents, n, me)
return {lapsed, missing}
"""

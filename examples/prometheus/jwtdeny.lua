-- jwtdeny's figures for Prometheus through redis_exporter, which exports the INFO sections it
-- knows and drops a module's own: run it with `-script jwtdeny.lua` (Debian's
-- prometheus-redis-exporter too), and every numeric field of `INFO jwtdeny` appears on
-- /metrics as `redis_script_values{key="jwtdeny_<field>"}`, plus two health gauges:
--   jwtdeny_loaded             1 while the module answers INFO jwtdeny, 0 when it is not loaded
--   jwtdeny_last_fetch_ok      1 when the last JWKS fetch succeeded (absent without a provider)
--   jwtdeny_last_reload_ok     1 when the last keys-file load succeeded (absent before any)
-- and, per issuer of jwtdeny.issuers-file, its INFO line `jwtdeny_issuer_<name>` as
-- `jwtdeny_issuer_<name>_<field>` (keys_loaded, fetches_ok, checks_active, checks_badsig, …)
-- and `jwtdeny_issuer_<name>_last_fetch_ok`.
-- Read-only: one INFO call, no key is touched. Values are strings, as the exporter expects.
local out = {}
local ok, info = pcall(redis.call, 'INFO', 'jwtdeny')
local loaded = ok and type(info) == 'string' and string.find(info, 'jwtdeny_checks_active:', 1, true) ~= nil
table.insert(out, 'jwtdeny_loaded')
table.insert(out, loaded and '1' or '0')
if not loaded then
  return out
end
for name, value in string.gmatch(info, 'jwtdeny_([%w_%-]+):([^\r\n]*)') do
  if string.sub(name, 1, 7) == 'issuer_' then
    -- An issuer of jwtdeny.issuers-file: one line of field=value pairs.
    for field, v in string.gmatch(value, '([%w_]+)=([^,]*)') do
      if string.match(v, '^%-?%d+$') then
        table.insert(out, 'jwtdeny_' .. name .. '_' .. field)
        table.insert(out, v)
      elseif field == 'last_fetch_result' then
        table.insert(out, 'jwtdeny_' .. name .. '_last_fetch_ok')
        table.insert(out, v == 'ok' and '1' or '0')
      end
    end
  elseif string.match(value, '^%-?%d+$') or string.match(value, '^%-?%d+%.%d+$') then
    table.insert(out, 'jwtdeny_' .. name)
    table.insert(out, value)
  elseif name == 'jwks_last_fetch_result' and value ~= 'never' then
    table.insert(out, 'jwtdeny_last_fetch_ok')
    table.insert(out, value == 'ok' and '1' or '0')
  elseif name == 'last_reload_result' and value ~= 'never' then
    table.insert(out, 'jwtdeny_last_reload_ok')
    table.insert(out, value == 'ok' and '1' or '0')
  end
end
return out

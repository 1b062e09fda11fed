-- ratelimit.lua: placeholder until the rate limit check lands; answers {0}.
return {0}

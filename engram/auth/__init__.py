"""Who may call the gateway: API keys, tenants, abuse limits and the internal relay's secret.

Nothing here is imported by workflow code. Modules are small on purpose: `records` (what the
store keeps), `keys` (making, parsing and hashing keys), `keyring` (checking a call's key against
the store), `principal` (who is calling, for the servicers), `interceptor` (the gRPC side),
`limits`, `tenancy` (which agents a caller may see), `relay_secret`, `exposure` (refusing to
serve a network without keys), `gateway_security` (what a gateway is built with, from its flags)
and `key_commands` (`engram keys`).
"""

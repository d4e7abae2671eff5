"""Who may call the gateway: API keys, abuse limits and the internal relay's secret.

Nothing here is imported by workflow code, and nothing here imports the gateway or the stores:
the gateway builds on auth (engram.gateway.security wires it, engram.gateway.tenancy scopes
agents to a caller's tenant) and the transcript stores implement `key_store.KeyStore`. Modules
are small on purpose: `records` (what the store keeps), `key_store` (what auth needs of a store),
`keys` (making, parsing and hashing keys), `keyring` (checking a call's key against the store),
`principal` (who is calling, for the servicers), `interceptor` (the gRPC side), `limits`,
`relay_secret`, `exposure` (refusing to serve a network without keys) and `key_commands`
(`engram keys`).
"""

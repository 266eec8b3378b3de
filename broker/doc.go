// Package broker is the Strata server: it wires the hot store (broker/store), the cluster
// metadata (Metadata, implemented over etcd by package meta) and the remoting protocol
// (broker/remoting) into the two RocketMQ roles a client talks to, plus an HTTP endpoint.
//
//   - The name-server role (nameserver.go) answers route queries from the metadata view, so
//     any broker can serve as a client's name server.
//   - The broker role (send.go, pull.go, consumers.go, offsets.go, admin.go) produces,
//     long-polls, keeps consumer-group membership per connection and commits offsets.
//     Subscriptions (TAG and SQL92) compile once through filters.go into broker/filter
//     values; pulls filter with them in the hot store's records and in the cold tier's reader.
//   - HTTPHandler serves /healthz, /readyz, /metrics, /tier/status and, when enabled,
//     /debug/pprof behind an admin check (httpauth.go).
//   - security.go wires broker/acl in front of both roles' dispatch (Check before a request
//     is served, Authorize where a handler reads a message by offset) and TLS around every
//     listener.
//
// Start reading at Broker (broker.go): New, Start, Close. PROTOCOL.md (shared docs) is the
// wire specification every handler cites.
package broker

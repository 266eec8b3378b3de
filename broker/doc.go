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
//     Transactional sends, END_TRANSACTION and check-backs go through txn.go to broker/txn.
//   - HTTPHandler serves /healthz, /readyz, /metrics, /tier/status, /timer/status,
//     /txn/pending, /debug/pprof when enabled (behind an admin check, httpauth.go) and the web
//     console: package broker/console renders it over consoleSource (consolesource.go),
//     which reads the metadata view, the store, the tier and the client registry, and
//     resets offsets through INVOKE_BROKER_TO_RESET_OFFSET's handler.
//   - Every broker campaigns for master of its broker group (election.go); only the elected
//     master writes the group's cold tier (tiering.go), fenced by its election term.
//   - security.go wires broker/acl in front of both roles' dispatch (Check before a request
//     is served, Authorize where a handler reads a message by offset) and TLS around every
//     listener.
//
// Start reading at Broker (broker.go): New, Start, Close. PROTOCOL.md (shared docs) is the
// wire specification every handler cites.
package broker

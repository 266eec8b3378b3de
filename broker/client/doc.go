// Package client is a small RocketMQ-protocol client for Strata's own tools: it reads routes
// from a name server, creates and lists topics, asks brokers for offsets and pulls a queue at
// an explicit offset. Applications use the official RocketMQ clients; the CLI and tests use this
// where those clients have no API (explicit offsets, time lookups, admin through --namesrv).
//
// Start with Dial and Client.Route.
package client

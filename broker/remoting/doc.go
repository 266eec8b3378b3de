// Package remoting speaks RocketMQ's "remoting" wire protocol: the frame codec
// (JSON and ROCKETMQ binary headers), the request and response codes, and the
// connection handling for both sides of a socket.
//
// Start reading from Command (one request or response), ReadFrame/EncodeFrame
// (the bytes on the wire, documented in codec.go), Server and Handler (the
// broker side: many requests multiplexed per connection, answered out of
// order), Conn (one connection, able to call back into the client with
// Invoke) and Client (the dialing side, used by the CLI and by raw-protocol
// tests). ExtFields carries request and response headers with typed getters
// that give actionable errors.
//
// Memory under hostile input: a frame's body is allocated once its bytes have
// arrived, not when its length prefix declares them (codec.go), and a Server
// bounds the bytes of all frames it holds with one budget,
// Config.MaxInFlightFrameBytes (budget.go): a connection whose frame does not
// fit waits, reading nothing, rather than being closed. A Client reads large
// frames into recycled buffers (framebuf.go), which Command.Release hands back
// once the caller is done with the body.
//
// Security: Credentials (sign.go) sign requests as RocketMQ's ACL clients do, and
// ClientConfig.Credentials signs every request of a Client; ServerTLS (tls.go) serves TLS
// from PEM files read again when they change, enforcing or permissive, with optional client
// certificates, and ClientTLSConfig dials it.
//
// The protocol itself is described in /work/shared/PROTOCOL.md §1–§2.
package remoting

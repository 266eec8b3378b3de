// Package integration holds Strata's end-to-end tests: real processes (the strata binary, a
// separate etcd, MinIO) driven by the official RocketMQ Go client and independent checkers.
// The Makefile's tools target installs what they need; a missing tool fails the test with the
// command to run.
package integration

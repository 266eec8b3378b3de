// Package query finds and exports messages across both tiers: lookup by offset message id
// (commit-log position) and by key or unique key (Finder, lookup.go), and export of message
// ranges to Apache Arrow IPC files or Parquet (Exporter, export.go; FileWriter, writer.go).
//
// Start reading at Exporter: Plan turns a topic's queues and --from/--to bounds (offsets or
// times) into queue ranges, Run streams each range — the cold part straight from the bucket
// through a read-only tier.Tier, the hot part through a HotReader (a broker) — into a
// FileWriter, which builds Arrow record batches of bounded size and writes them as it goes,
// so memory stays flat whatever the range. Schema (schema.go) is the row layout.
//
// Exporter.Filter (a broker/filter.Filter: TAG or SQL92) is applied before rows are built: by
// the tier's block reader for cold data, by the broker's pull for hot data. query imports
// broker/filter beside broker/message; the filter package imports nothing above message.
package query

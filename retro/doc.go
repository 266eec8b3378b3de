// Package retro treats a queue's hot tier (broker/store) and cold tier (tier) as one log for
// rewinding: the minimum offset (the oldest held in either tier), the maximum offset, the
// earliest store time, the first offset stored at or after a time (exact whether the time
// falls in the cold tier, the hot tier or on the boundary), which tier holds an offset, and a
// sequential reader that replays a queue from the cold tier into the hot tier with no gap and
// no duplicate.
//
// Start reading at Log (log.go); Reader (reader.go) is the replay cursor. Group offset resets
// use Log.OffsetForTime and Log.Clamp to compute per-queue offsets; the broker stores them with
// meta.OffsetStore.Reset and tells connected clients.
package retro

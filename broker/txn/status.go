package txn

import (
	"context"
	"strconv"

	"github.com/stratamq/strata/broker/message"
)

// PendingHalf describes one half message with no decision (GET /txn/pending).
type PendingHalf struct {
	Group           string `json:"group"`
	Topic           string `json:"topic"`
	QueueID         int32  `json:"queueId"`
	TransactionID   string `json:"transactionId"`
	OffsetMsgID     string `json:"offsetMsgId"`
	HalfOffset      int64  `json:"halfOffset"`
	CommitLogOffset int64  `json:"commitLogOffset"`
	StoredMs        int64  `json:"storedMs"`
	AgeMs           int64  `json:"ageMs"`
	Checks          int    `json:"checks"`
	NextCheckMs     int64  `json:"nextCheckMs"`
	Deciding        bool   `json:"deciding,omitempty"`
	// Error says why the half message could not be read (its other fields are then empty).
	Error string `json:"error,omitempty"`
}

// PendingList is a page of pending half messages, oldest first.
type PendingList struct {
	Group   string        `json:"group,omitempty"`
	Pending int           `json:"pending"` // of the group (of every group without one)
	Halves  []PendingHalf `json:"halves"`
}

// Pending lists up to limit pending half messages of group ("" for every group), oldest
// first, with the total count. It reads each listed half message from the log.
func (s *Service) Pending(ctx context.Context, group string, limit int) PendingList {
	out := PendingList{Group: group, Halves: []PendingHalf{}}
	var picked []entry
	s.mu.Lock()
	id, known := s.t.groups.lookup(group)
	if group == "" || known {
		for _, e := range s.t.entries {
			if e.state == stateGone || group != "" && e.group != id {
				continue
			}
			out.Pending++
			if len(picked) < limit {
				picked = append(picked, e)
			}
		}
	}
	names := make([]string, len(picked))
	for i, e := range picked {
		names[i] = s.t.groups.name(e.group)
	}
	s.mu.Unlock()
	nowMs := s.cfg.Clock.Now().UnixMilli()
	for i, e := range picked {
		p := PendingHalf{Group: names[i], CommitLogOffset: e.pos, Checks: int(e.checks), NextCheckMs: e.dueMs, Deciding: e.state == stateDeciding}
		half, err := s.readHalf(ctx, e.pos)
		if err != nil {
			p.Error = err.Error()
		} else {
			props := half.Properties
			p.Topic = props[message.PropertyRealTopic]
			if q, err := strconv.ParseInt(props[message.PropertyRealQueueID], 10, 32); err == nil {
				p.QueueID = int32(q)
			}
			p.TransactionID = props[message.PropertyTransactionID]
			p.OffsetMsgID = half.OffsetMsgID()
			p.HalfOffset = half.QueueOffset
			p.StoredMs = half.StoreTimestamp
			p.AgeMs = nowMs - half.StoreTimestamp
		}
		out.Halves = append(out.Halves, p)
	}
	return out
}

// PendingCount is the number of half messages with no decision.
func (s *Service) PendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.live
}

package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The epoch history (FORMAT.md): which master epoch wrote which part of the commit log. An
// entry (epoch, start) says that the records from commit-log position start up to the next
// entry's start were written under epoch. Records before the first entry are of epoch 0
// (written before replication, or by a single-member group). Replication compares two
// members' histories to find where their logs diverge (Kafka's leader-epoch rule). Unlike
// index files the history is not derived from the log, so it lives beside commitlog/, not in
// index/.

// EpochStart is one entry of the epoch history: records from StartOffset on (up to the next
// entry's StartOffset) were written under Epoch.
type EpochStart struct {
	Epoch       int64
	StartOffset int64
}

const (
	epochsFile         = "epochs"
	epochsVersion      = 1
	epochsHeaderBytes  = 12 // magic, version, 3 reserved, uint32 count
	epochEntryBytes    = 16
	maxEpochHistoryLen = 1 << 20
)

var epochsMagic = [4]byte{'S', 'E', 'P', 'H'}

// ErrEpochRegress refuses BeginEpoch with an epoch older than the one that wrote the log's
// last records.
var ErrEpochRegress = errors.New("epoch older than the log's current epoch")

func encodeEpochs(h []EpochStart) []byte {
	b := make([]byte, epochsHeaderBytes, epochsHeaderBytes+len(h)*epochEntryBytes+4)
	copy(b, epochsMagic[:])
	b[4] = epochsVersion
	binary.BigEndian.PutUint32(b[8:], uint32(len(h)))
	for _, e := range h {
		b = binary.BigEndian.AppendUint64(b, uint64(e.Epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.StartOffset))
	}
	return binary.BigEndian.AppendUint32(b, crc32c(b))
}

// decodeEpochs parses an epoch-history file. Entries must have positive epochs increasing
// strictly and start offsets not decreasing.
func decodeEpochs(b []byte) ([]EpochStart, error) {
	if len(b) < epochsHeaderBytes+4 || [4]byte(b[:4]) != epochsMagic {
		return nil, fmt.Errorf("%w: epoch history has a bad header", ErrCorrupt)
	}
	if b[4] != epochsVersion {
		return nil, fmt.Errorf("%w: epoch history version %d, this build reads %d", ErrCorrupt, b[4], epochsVersion)
	}
	n := binary.BigEndian.Uint32(b[8:])
	if n > maxEpochHistoryLen || len(b) != epochsHeaderBytes+int(n)*epochEntryBytes+4 {
		return nil, fmt.Errorf("%w: epoch history of %d bytes does not hold %d entries", ErrCorrupt, len(b), n)
	}
	body := b[:len(b)-4]
	if crc32c(body) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: epoch history checksum mismatch", ErrCorrupt)
	}
	h := make([]EpochStart, n)
	for i := range h {
		p := body[epochsHeaderBytes+i*epochEntryBytes:]
		h[i] = EpochStart{Epoch: int64(binary.BigEndian.Uint64(p)), StartOffset: int64(binary.BigEndian.Uint64(p[8:]))}
		if h[i].Epoch <= 0 || h[i].StartOffset < 0 {
			return nil, fmt.Errorf("%w: epoch history entry %d out of range", ErrCorrupt, i)
		}
		if i > 0 && (h[i].Epoch <= h[i-1].Epoch || h[i].StartOffset < h[i-1].StartOffset) {
			return nil, fmt.Errorf("%w: epoch history entry %d does not follow entry %d", ErrCorrupt, i, i-1)
		}
	}
	return h, nil
}

func (s *Store) loadEpochs() error {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, epochsFile))
	if os.IsNotExist(err) {
		s.epochs = nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("read epoch history: %w", err)
	}
	h, err := decodeEpochs(b)
	if err != nil {
		return fmt.Errorf("%w; the file is %s: restore it, or delete it to treat the whole log as one old epoch (replication may then copy the log again)",
			err, filepath.Join(s.cfg.Dir, epochsFile))
	}
	s.epochs = h
	return nil
}

// writeEpochs replaces the epoch-history file atomically (temporary file, fsync, rename,
// directory fsync).
func (s *Store) writeEpochs(h []EpochStart) error {
	path := filepath.Join(s.cfg.Dir, epochsFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write epoch history: %w", err)
	}
	if _, err := f.Write(encodeEpochs(h)); err != nil {
		f.Close()
		return fmt.Errorf("write epoch history: %w", err)
	}
	if err := s.syncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("fsync epoch history: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write epoch history: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write epoch history: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		return fmt.Errorf("fsync data directory after writing the epoch history: %w", err)
	}
	return nil
}

// EpochHistory returns a copy of the epoch history, oldest first.
func (s *Store) EpochHistory() []EpochStart {
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	return append([]EpochStart(nil), s.epochs...)
}

// EpochAt is the epoch that wrote the record at commit-log position pos according to h: the
// epoch of the last entry starting at or before pos, or 0 when none does.
func EpochAt(h []EpochStart, pos int64) int64 {
	var e int64
	for _, x := range h {
		if x.StartOffset > pos {
			break
		}
		e = x.Epoch
	}
	return e
}

// BeginEpoch records that the records written from EndOffset() on are of epoch. It runs in
// order with appends (no append is in flight while it records the position). Trailing
// entries that own no records (their start is at the end of the log) are dropped first, as
// they describe nothing. An epoch equal to the last remaining one changes nothing; an older
// one is refused with ErrEpochRegress. A new master calls it once, before it accepts
// writes; a follower calls it when the stream's records change epoch.
//
// A new entry also saves an index checkpoint taken at that position, which TruncateTo uses to
// roll the index back without rebuilding it when it truncates into this epoch.
func (s *Store) BeginEpoch(epoch int64) error {
	if epoch <= 0 {
		return fmt.Errorf("begin epoch %d: epochs are positive (the election revision)", epoch)
	}
	op := &writeOp{kind: opBeginEpoch, next: epoch, done: make(chan struct{})}
	return s.runControl(context.Background(), op)
}

// beginEpoch runs on the writer goroutine with every earlier append indexed.
func (s *Store) beginEpoch(epoch int64) error {
	end := s.logEnd.Load()
	s.epochMu.Lock()
	h := append([]EpochStart(nil), s.epochs...)
	s.epochMu.Unlock()
	for len(h) > 0 && h[len(h)-1].StartOffset >= end {
		h = h[:len(h)-1]
	}
	var last int64
	if len(h) > 0 {
		last = h[len(h)-1].Epoch
	}
	if epoch < last {
		return fmt.Errorf("begin epoch %d at %d: %w: the log's last records are of epoch %d", epoch, end, ErrEpochRegress, last)
	}
	if epoch > last {
		h = append(h, EpochStart{Epoch: epoch, StartOffset: end})
		if err := s.saveRollbackCheckpoint(); err != nil {
			return fmt.Errorf("begin epoch %d: %w", epoch, err)
		}
	}
	if err := s.writeEpochs(h); err != nil {
		return fmt.Errorf("begin epoch %d: %w", epoch, err)
	}
	s.epochMu.Lock()
	s.epochs = h
	s.epochMu.Unlock()
	return nil
}

// trimEpochsFrom drops the entries that start at or after pos (TruncateTo). With keepAtEnd
// set, an entry starting exactly at pos is kept (Open: it may be a just-begun epoch).
func (s *Store) trimEpochsFrom(pos int64, keepAtEnd bool) error {
	s.epochMu.Lock()
	h := append([]EpochStart(nil), s.epochs...)
	s.epochMu.Unlock()
	n := len(h)
	for n > 0 && (h[n-1].StartOffset > pos || (!keepAtEnd && h[n-1].StartOffset == pos)) {
		n--
	}
	if n == len(h) {
		return nil
	}
	if err := s.writeEpochs(h[:n]); err != nil {
		return err
	}
	s.epochMu.Lock()
	s.epochs = h[:n]
	s.epochMu.Unlock()
	return nil
}

package store

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Key index files (FORMAT.md), after RocketMQ's IndexFile: "<firstPos>.kix" holds up to
// KeyIndexFileKeys fixed 32-byte entries (key hash, commit-log position, store time, size,
// previous entry in the same hash slot) in commit-log order, then, once full, its slot table
// and a footer. The active file's slot table lives in memory (4 bytes a slot) and is rebuilt
// from its entries at open; a sealed file is read through the block cache, so the heap does
// not grow with the number of keys held on disk.
const (
	keyFileHeaderBytes = 64
	keyFileFooterBytes = 64
	keyEntryBytes      = 32
	keyFileVersion     = 1
	keyFileExt         = ".kix"
)

var (
	keyFileMagic   = [4]byte{'S', 'K', 'I', 'X'}
	keyFooterMagic = [4]byte{'S', 'K', 'I', 'F'}
)

type keyFile struct {
	af       *appendFile
	firstPos int64 // file name: position of the first entry's record
	slots    uint32
	capacity uint32
	count    atomic.Uint32
	// heads is the slot table while the file is active: 1 + index of the newest entry of
	// each slot, 0 for none. Nil once sealed (the table is then in the file).
	heads                        atomic.Pointer[[]atomic.Uint32]
	minPos, maxPos, minTs, maxTs atomic.Int64
}

type keyIndex struct {
	dir      string
	capacity uint32
	slots    uint32
	cache    *blockCache

	mu     sync.RWMutex // files
	files  []*keyFile   // ascending; the last may be active
	active *keyFile     // writer (index mutex) only
	fresh  bool         // a file was created since the last checkpoint
}

// keySlots is the slot count for a file of capacity entries: a quarter, a power of two.
func keySlots(capacity int) uint32 {
	s := uint32(16)
	for int(s)*4 < capacity {
		s <<= 1
	}
	return s
}

func keyFileName(dir string, firstPos int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", firstPos, keyFileExt))
}

func encodeKeyFileHeader(slots, capacity uint32, firstPos int64) []byte {
	h := make([]byte, keyFileHeaderBytes)
	copy(h, keyFileMagic[:])
	h[4] = keyFileVersion
	be := binary.BigEndian
	be.PutUint32(h[8:], slots)
	be.PutUint32(h[12:], capacity)
	be.PutUint64(h[16:], uint64(firstPos))
	be.PutUint32(h[60:], crc32c(h[:60]))
	return h
}

type keyFileHeader struct {
	slots, capacity uint32
	firstPos        int64
}

func decodeKeyFileHeader(h []byte) (keyFileHeader, error) {
	var k keyFileHeader
	be := binary.BigEndian
	if len(h) < keyFileHeaderBytes || [4]byte(h[:4]) != keyFileMagic || crc32c(h[:60]) != be.Uint32(h[60:]) {
		return k, fmt.Errorf("%w: key index header", ErrCorrupt)
	}
	if h[4] != keyFileVersion {
		return k, fmt.Errorf("%w: key index version %d, this build reads %d", ErrCorrupt, h[4], keyFileVersion)
	}
	k = keyFileHeader{slots: be.Uint32(h[8:]), capacity: be.Uint32(h[12:]), firstPos: int64(be.Uint64(h[16:]))}
	if k.slots == 0 || k.slots&(k.slots-1) != 0 || k.slots > 1<<28 || k.capacity == 0 || k.capacity > 1<<28 || k.firstPos < 0 {
		return keyFileHeader{}, fmt.Errorf("%w: key index header fields out of range", ErrCorrupt)
	}
	return k, nil
}

type keyFileFooter struct {
	count, slots                 uint32
	minPos, maxPos, minTs, maxTs int64
}

func encodeKeyFileFooter(f keyFileFooter) []byte {
	b := make([]byte, keyFileFooterBytes)
	copy(b, keyFooterMagic[:])
	b[4] = keyFileVersion
	be := binary.BigEndian
	be.PutUint32(b[8:], f.count)
	be.PutUint32(b[12:], f.slots)
	be.PutUint64(b[16:], uint64(f.minPos))
	be.PutUint64(b[24:], uint64(f.maxPos))
	be.PutUint64(b[32:], uint64(f.minTs))
	be.PutUint64(b[40:], uint64(f.maxTs))
	be.PutUint32(b[48:], crc32c(b[:48]))
	return b
}

func decodeKeyFileFooter(b []byte) (keyFileFooter, error) {
	var f keyFileFooter
	be := binary.BigEndian
	if len(b) < keyFileFooterBytes || [4]byte(b[:4]) != keyFooterMagic || crc32c(b[:48]) != be.Uint32(b[48:]) {
		return f, fmt.Errorf("%w: key index footer", ErrCorrupt)
	}
	if b[4] != keyFileVersion {
		return f, fmt.Errorf("%w: key index footer version %d", ErrCorrupt, b[4])
	}
	f = keyFileFooter{count: be.Uint32(b[8:]), slots: be.Uint32(b[12:]), minPos: int64(be.Uint64(b[16:])),
		maxPos: int64(be.Uint64(b[24:])), minTs: int64(be.Uint64(b[32:])), maxTs: int64(be.Uint64(b[40:]))}
	if f.count == 0 || f.minPos < 0 || f.maxPos < f.minPos || f.maxTs < f.minTs {
		return keyFileFooter{}, fmt.Errorf("%w: key index footer fields out of range", ErrCorrupt)
	}
	return f, nil
}

type keyEntry struct {
	hash    uint64
	pos     int64
	storeTs int64
	size    int32
	prev    uint32 // 1 + index of the previous entry in the slot; 0 ends the chain
}

func putKeyEntry(b []byte, e keyEntry) {
	be := binary.BigEndian
	be.PutUint64(b, e.hash)
	be.PutUint64(b[8:], uint64(e.pos))
	be.PutUint64(b[16:], uint64(e.storeTs))
	be.PutUint32(b[24:], uint32(e.size))
	be.PutUint32(b[28:], e.prev)
}

func getKeyEntry(b []byte) keyEntry {
	be := binary.BigEndian
	return keyEntry{hash: be.Uint64(b), pos: int64(be.Uint64(b[8:])), storeTs: int64(be.Uint64(b[16:])),
		size: int32(be.Uint32(b[24:])), prev: be.Uint32(b[28:])}
}

func (k *keyFile) sealedTableOffset() int64 {
	return keyFileHeaderBytes + int64(k.count.Load())*keyEntryBytes
}

// add indexes hash → (pos, size, ts). Index mutex held.
func (x *keyIndex) add(hash uint64, pos int64, size int32, ts int64) error {
	kf := x.active
	if kf == nil {
		var err error
		if kf, err = x.create(pos); err != nil {
			return err
		}
	}
	i := kf.count.Load()
	heads := *kf.heads.Load()
	slot := &heads[hash&uint64(kf.slots-1)]
	var b [keyEntryBytes]byte
	putKeyEntry(b[:], keyEntry{hash: hash, pos: pos, storeTs: ts, size: size, prev: slot.Load()})
	if err := kf.af.append(b[:]); err != nil {
		return err
	}
	if i == 0 {
		kf.minPos.Store(pos)
		kf.minTs.Store(ts)
	}
	kf.maxPos.Store(pos)
	kf.maxTs.Store(max(ts, kf.maxTs.Load()))
	kf.count.Store(i + 1) // before the slot, so a reader never meets a link past count
	slot.Store(i + 1)
	if i+1 == kf.capacity {
		return x.seal(kf)
	}
	return nil
}

func (x *keyIndex) create(firstPos int64) (*keyFile, error) {
	af, _, err := openAppendFile(keyFileName(x.dir, firstPos), 0, 256<<10)
	if err != nil {
		return nil, fmt.Errorf("create key index file: %w", err)
	}
	kf := &keyFile{af: af, firstPos: firstPos, slots: x.slots, capacity: x.capacity}
	heads := make([]atomic.Uint32, x.slots)
	kf.heads.Store(&heads)
	if err := af.append(encodeKeyFileHeader(x.slots, x.capacity, firstPos)); err != nil {
		af.close()
		return nil, err
	}
	x.mu.Lock()
	x.files = append(x.files, kf)
	x.fresh = true
	x.mu.Unlock()
	x.active = kf
	return kf, nil
}

// seal writes the slot table and footer after the entries; the file is then immutable.
func (x *keyIndex) seal(kf *keyFile) error {
	heads := *kf.heads.Load()
	tbl := make([]byte, 4*len(heads))
	for i := range heads {
		binary.BigEndian.PutUint32(tbl[4*i:], heads[i].Load())
	}
	tbl = append(tbl, encodeKeyFileFooter(keyFileFooter{count: kf.count.Load(), slots: kf.slots,
		minPos: kf.minPos.Load(), maxPos: kf.maxPos.Load(), minTs: kf.minTs.Load(), maxTs: kf.maxTs.Load()})...)
	if err := kf.af.append(tbl); err != nil {
		return err
	}
	if err := kf.af.finish(); err != nil {
		return err
	}
	kf.heads.Store(nil)
	x.active = nil
	return nil
}

// each calls fn with the entries of hash stored within [beginMs, endMs], newest first,
// until fn returns false.
func (x *keyIndex) each(hash uint64, beginMs, endMs int64, fn func(keyEntry) bool) error {
	x.mu.RLock()
	files := append([]*keyFile(nil), x.files...)
	x.mu.RUnlock()
	var b [keyEntryBytes]byte
	for i := len(files) - 1; i >= 0; i-- {
		kf := files[i]
		n := kf.count.Load()
		if n == 0 || kf.maxTs.Load() < beginMs || kf.minTs.Load() > endMs {
			continue
		}
		slot := hash & uint64(kf.slots-1)
		var idx uint32
		if heads := kf.heads.Load(); heads != nil {
			idx = (*heads)[slot].Load()
		} else {
			if err := kf.af.readAt(b[:4], kf.sealedTableOffset()+int64(slot)*4, x.cache); err != nil {
				return err
			}
			idx = binary.BigEndian.Uint32(b[:4])
		}
		for idx != 0 && idx <= n {
			if err := kf.af.readAt(b[:], keyFileHeaderBytes+int64(idx-1)*keyEntryBytes, x.cache); err != nil {
				return err
			}
			e := getKeyEntry(b[:])
			if e.storeTs < beginMs {
				break // store times grow along the log
			}
			if e.hash == hash && e.storeTs <= endMs && !fn(e) {
				return nil
			}
			if e.prev >= idx {
				break // a corrupt link; never loop
			}
			idx = e.prev
		}
	}
	return nil
}

// dropBelow deletes the sealed files whose records all lie below pos. Index mutex held (it
// reads active).
func (x *keyIndex) dropBelow(pos int64) error {
	x.mu.Lock()
	var gone []*keyFile
	keep := x.files[:0]
	for _, kf := range x.files {
		if kf != x.active && kf.heads.Load() == nil && kf.maxPos.Load() < pos {
			gone = append(gone, kf)
			continue
		}
		keep = append(keep, kf)
	}
	clear(x.files[len(keep):])
	x.files = keep
	x.mu.Unlock()
	for _, kf := range gone {
		kf.af.close()
		if err := os.Remove(kf.af.path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove key index file: %w", err)
		}
	}
	return nil
}

// dirtyFiles returns the files appended to since the last call.
func (x *keyIndex) dirtyFiles(out []*appendFile) ([]*appendFile, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, kf := range x.files {
		if kf.af.takeDirty() {
			out = append(out, kf.af)
		}
	}
	fresh := x.fresh
	x.fresh = false
	return out, fresh
}

func (x *keyIndex) closeFiles() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, kf := range x.files {
		kf.af.close()
	}
	x.files, x.active = nil, nil
}

// listKeyFiles returns the first positions named by the key index files in dir, ascending.
func listKeyFiles(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, keyFileExt) {
			continue
		}
		if p, err := strconv.ParseInt(strings.TrimSuffix(name, keyFileExt), 10, 64); err == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// loadSealed opens a sealed key file after checking its header, footer and length.
func (x *keyIndex) loadSealed(firstPos int64) error {
	path := keyFileName(x.dir, firstPos)
	af, _, err := openAppendFile(path, -1, 256<<10)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		af.close()
		return fmt.Errorf("key index file %s: %w", filepath.Base(path), err)
	}
	size := af.size()
	if size < keyFileHeaderBytes+keyFileFooterBytes {
		return fail(fmt.Errorf("%w: %d bytes", ErrCorrupt, size))
	}
	var h, f [64]byte
	if err := af.readAt(h[:], 0, nil); err != nil {
		return fail(err)
	}
	if err := af.readAt(f[:], size-keyFileFooterBytes, nil); err != nil {
		return fail(err)
	}
	hd, err := decodeKeyFileHeader(h[:])
	if err != nil {
		return fail(err)
	}
	ft, err := decodeKeyFileFooter(f[:])
	if err != nil {
		return fail(err)
	}
	want := keyFileHeaderBytes + int64(ft.count)*keyEntryBytes + int64(hd.slots)*4 + keyFileFooterBytes
	if hd.firstPos != firstPos || ft.slots != hd.slots || ft.count > hd.capacity || size != want {
		return fail(fmt.Errorf("%w: %d bytes, header and footer describe %d", ErrCorrupt, size, want))
	}
	kf := &keyFile{af: af, firstPos: firstPos, slots: hd.slots, capacity: hd.capacity}
	kf.count.Store(ft.count)
	kf.minPos.Store(ft.minPos)
	kf.maxPos.Store(ft.maxPos)
	kf.minTs.Store(ft.minTs)
	kf.maxTs.Store(ft.maxTs)
	x.files = append(x.files, kf)
	return nil
}

// loadNewest opens the newest key file the checkpoint names, which held count entries:
// sealed if that is its capacity, else active.
func (x *keyIndex) loadNewest(firstPos int64, count uint32) error {
	f, err := os.Open(keyFileName(x.dir, firstPos))
	if err != nil {
		return err
	}
	var h [keyFileHeaderBytes]byte
	_, err = f.ReadAt(h[:], 0)
	f.Close()
	if err != nil {
		return fmt.Errorf("key index file %d: %w", firstPos, err)
	}
	hd, err := decodeKeyFileHeader(h[:])
	if err != nil {
		return fmt.Errorf("key index file %d: %w", firstPos, err)
	}
	if count == hd.capacity {
		if err := x.loadSealed(firstPos); err != nil {
			return err
		}
		if got := x.files[len(x.files)-1].count.Load(); got != count {
			return fmt.Errorf("%w: key index file %d holds %d entries, the checkpoint says %d", ErrCorrupt, firstPos, got, count)
		}
		return nil
	}
	return x.loadActive(firstPos, count)
}

// loadActive opens the active key file truncated to count entries and rebuilds its slot
// table from them, checking every chain link.
func (x *keyIndex) loadActive(firstPos int64, count uint32) error {
	path := keyFileName(x.dir, firstPos)
	af, _, err := openAppendFile(path, keyFileHeaderBytes+int64(count)*keyEntryBytes, 256<<10)
	if err != nil {
		return fmt.Errorf("key index file %s: %w", filepath.Base(path), err)
	}
	fail := func(err error) error {
		af.close()
		return fmt.Errorf("key index file %s: %w", filepath.Base(path), err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	hd, err := decodeKeyFileHeader(b)
	if err != nil {
		return fail(err)
	}
	if hd.firstPos != firstPos || count >= hd.capacity {
		return fail(fmt.Errorf("%w: header does not match the checkpoint", ErrCorrupt))
	}
	kf := &keyFile{af: af, firstPos: firstPos, slots: hd.slots, capacity: hd.capacity}
	heads := make([]atomic.Uint32, hd.slots)
	var last int64 = -1
	for i := uint32(0); i < count; i++ {
		e := getKeyEntry(b[keyFileHeaderBytes+int64(i)*keyEntryBytes:])
		slot := &heads[e.hash&uint64(hd.slots-1)]
		if e.prev != slot.Load() || e.pos < last || e.size < 0 {
			return fail(fmt.Errorf("%w: entry %d does not chain", ErrCorrupt, i))
		}
		slot.Store(i + 1)
		if i == 0 {
			kf.minPos.Store(e.pos)
			kf.minTs.Store(e.storeTs)
		}
		kf.maxPos.Store(e.pos)
		kf.maxTs.Store(max(e.storeTs, kf.maxTs.Load()))
		last = e.pos
	}
	kf.count.Store(count)
	kf.heads.Store(&heads)
	x.files = append(x.files, kf)
	x.active = kf
	return nil
}

// keyHash hashes topic and key (RocketMQ indexes topic + "#" + key): 64-bit FNV-1a.
func keyHash(topic, key string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint64(topic[i])) * prime
	}
	h = (h ^ '#') * prime
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	return h
}

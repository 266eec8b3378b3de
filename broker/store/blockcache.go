package store

import (
	"sync"
)

// blockBytes is the unit of index-file caching: consume-queue pages are exactly one block,
// and key-index entries and slots never straddle one.
const blockBytes = 4096

// blockCache is a bounded cache of immutable 4 KiB blocks of index files, keyed by
// (file id, block number). It is the only place index data read from disk stays in the Go
// heap, so its size, not the data held on disk, bounds that heap. The slabs hold no
// pointers and the map holds none either, so the garbage collector does not scan them.
// Eviction is CLOCK (second chance) per shard.
type blockCache struct {
	shards []cacheShard
}

type cacheShard struct {
	mu     sync.Mutex
	slots  map[uint64]int32 // key → slot
	keys   []uint64         // slot → key
	refbit []bool
	// slabs hold the slots' blocks, slabBlocks a slab, added as the cache fills: growing
	// one arena instead would copy all of it at each doubling, into fresh pages.
	slabs [][]byte
	max   int
	hand  int
}

const slabBlocks = 64

// block is slot i's bytes.
func (sh *cacheShard) block(i int) []byte {
	s := sh.slabs[i/slabBlocks]
	o := (i % slabBlocks) * blockBytes
	return s[o : o+blockBytes]
}

const cacheShards = 8

func newBlockCache(bytes int64) *blockCache {
	blocks := int(bytes / blockBytes)
	per := max(blocks/cacheShards, 1)
	c := &blockCache{shards: make([]cacheShard, cacheShards)}
	for i := range c.shards {
		c.shards[i] = cacheShard{slots: make(map[uint64]int32), max: per}
	}
	return c
}

func blockKey(file uint32, block int64) uint64 { return uint64(file)<<32 | uint64(uint32(block)) }

func (c *blockCache) shard(key uint64) *cacheShard {
	h := key * 0x9E3779B97F4A7C15
	return &c.shards[h>>61]
}

// get copies block key's bytes [off, off+len(dst)) into dst and reports whether the block
// was cached.
func (c *blockCache) get(key uint64, off int, dst []byte) bool {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.slots[key]
	if !ok {
		return false
	}
	sh.refbit[i] = true
	copy(dst, sh.block(int(i))[off:])
	return true
}

// put caches a copy of block (blockBytes long) under key.
func (c *blockCache) put(key uint64, block []byte) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.slots[key]; ok {
		return
	}
	var i int
	if len(sh.keys) < sh.max {
		i = len(sh.keys)
		sh.keys = append(sh.keys, key)
		sh.refbit = append(sh.refbit, false)
		if i%slabBlocks == 0 {
			sh.slabs = append(sh.slabs, make([]byte, min(sh.max-i, slabBlocks)*blockBytes))
		}
	} else {
		for sh.refbit[sh.hand] {
			sh.refbit[sh.hand] = false
			sh.hand = (sh.hand + 1) % len(sh.keys)
		}
		i = sh.hand
		sh.hand = (sh.hand + 1) % len(sh.keys)
		delete(sh.slots, sh.keys[i])
		sh.keys[i] = key
	}
	sh.slots[key] = int32(i)
	copy(sh.block(i), block)
}

// bytes is how much memory the cache's blocks take.
func (c *blockCache) bytes() int64 {
	var n int64
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, s := range sh.slabs {
			n += int64(len(s))
		}
		sh.mu.Unlock()
	}
	return n
}

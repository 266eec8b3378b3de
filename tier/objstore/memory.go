package objstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemBucket keeps objects in memory. It exists for unit tests of code that
// uses a Bucket; it copies data in and out so callers cannot alias it.
type MemBucket struct {
	mu      sync.RWMutex
	objects map[string]memObject
}

type memObject struct {
	data    []byte
	modTime time.Time
}

var _ Bucket = (*MemBucket)(nil)

// NewMemory returns an empty in-memory bucket.
func NewMemory() *MemBucket {
	return &MemBucket{objects: make(map[string]memObject)}
}

// Put implements Bucket.
func (b *MemBucket) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %q: %w", name, err)
	}
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(size))
	}
	n, err := io.Copy(&buf, ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("put %q: read content: %w", name, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("put %q: read %d bytes, expected %d: %w", name, n, size, ErrSizeMismatch)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %q: %w", name, err)
	}
	b.mu.Lock()
	b.objects[name] = memObject{data: buf.Bytes(), modTime: time.Now()}
	b.mu.Unlock()
	return nil
}

func (b *MemBucket) lookup(ctx context.Context, op, name string) (memObject, error) {
	if err := ValidateName(name); err != nil {
		return memObject{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return memObject{}, fmt.Errorf("%s %q: %w", op, name, err)
	}
	b.mu.RLock()
	o, ok := b.objects[name]
	b.mu.RUnlock()
	if !ok {
		return memObject{}, fmt.Errorf("%s %q: %w", op, name, ErrNotFound)
	}
	return o, nil
}

// Get implements Bucket.
func (b *MemBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	o, err := b.lookup(ctx, "get", name)
	if err != nil {
		return nil, err
	}
	// Stored slices are never mutated after Put, so a reader over them is
	// safe without copying.
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// GetRange implements Bucket.
func (b *MemBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := checkRange(name, off, length); err != nil {
		return nil, err
	}
	o, err := b.lookup(ctx, "get range", name)
	if err != nil {
		return nil, err
	}
	start, end, err := clampRange(name, int64(len(o.data)), off, length)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(o.data[start:end])), nil
}

// Attributes implements Bucket.
func (b *MemBucket) Attributes(ctx context.Context, name string) (Attrs, error) {
	o, err := b.lookup(ctx, "attributes", name)
	if err != nil {
		return Attrs{}, err
	}
	return Attrs{Size: int64(len(o.data)), LastModified: o.modTime}, nil
}

// List implements Bucket.
func (b *MemBucket) List(ctx context.Context, prefix string, fn func(name string) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	b.mu.RLock()
	var names []string
	for name := range b.objects {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	b.mu.RUnlock()
	sort.Strings(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		if err := fn(name); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Bucket.
func (b *MemBucket) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	b.mu.Lock()
	delete(b.objects, name)
	b.mu.Unlock()
	return nil
}

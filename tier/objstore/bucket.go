package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Bucket is a flat namespace of immutable-once-written objects addressed by
// name. Names are slash-separated paths ("topic/3/00000000000000001024.seg");
// they are non-empty, do not start or end with '/', contain no empty, "." or
// ".." segments and no NUL byte (ValidateName).
//
// The contract every provider meets, checked by objstoretest.RunConformance:
//
//   - Put is atomic and idempotent: readers see either the previous object or
//     the complete new one, never a part; putting the same bytes under the
//     same name again is harmless, and a Put that fails or is cancelled leaves
//     any previous object in place.
//   - Get, GetRange and Attributes of a missing object return an error that
//     satisfies errors.Is(err, ErrNotFound).
//   - GetRange(off, length) returns the bytes [off, off+length) truncated at
//     the end of the object; length -1 means "to the end". off equal to the
//     size yields an empty reader; off beyond the size, a negative off or a
//     length below -1 return an error satisfying errors.Is(err,
//     ErrInvalidRange).
//   - List calls fn for every object whose name starts with prefix (a plain
//     string prefix, not a directory), recursively, in ascending byte order of
//     names; an error from fn stops the listing and is returned as is.
//   - Delete of a missing object is not an error.
//   - Every method honours ctx: a cancelled context ends the call with an
//     error satisfying errors.Is(err, ctx.Err()).
//
// Implementations are safe for concurrent use.
type Bucket interface {
	// Put stores the object name with the content of r. size is the number
	// of bytes r yields, or -1 if unknown; when it is known and r yields a
	// different number of bytes, Put fails and stores nothing.
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// Get returns a reader over the whole object; the caller closes it.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// GetRange returns a reader over length bytes of the object starting at
	// off (see the contract above for the end of the object).
	GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	// Attributes returns the size and modification time of an object.
	Attributes(ctx context.Context, name string) (Attrs, error)
	// List calls fn with the name of every object starting with prefix, in
	// ascending order.
	List(ctx context.Context, prefix string, fn func(name string) error) error
	// Delete removes an object; deleting a missing object succeeds.
	Delete(ctx context.Context, name string) error
}

// Attrs describes a stored object.
type Attrs struct {
	// Size is the object's length in bytes.
	Size int64
	// LastModified is when the object was last written, as the store
	// reports it (second precision on S3).
	LastModified time.Time
}

var (
	// ErrNotFound reports that an object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrInvalidRange reports a ranged read that starts past the end of the
	// object or has a negative offset or length.
	ErrInvalidRange = errors.New("invalid range")
	// ErrInvalidName reports an object name that breaks the naming rules of
	// Bucket.
	ErrInvalidName = errors.New("invalid object name")
	// ErrAccessDenied reports that the store refused the credentials.
	ErrAccessDenied = errors.New("access denied")
	// ErrSizeMismatch reports that a Put reader yielded a different number
	// of bytes than announced.
	ErrSizeMismatch = errors.New("object size mismatch")
)

// IsNotFound reports whether err means a missing object.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// ValidateName checks name against the naming rules of Bucket.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if strings.IndexByte(name, 0) >= 0 || strings.IndexByte(name, '\\') >= 0 {
		return fmt.Errorf("%w %q: contains NUL or backslash", ErrInvalidName, name)
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w %q: empty path segment (leading, trailing or double '/')", ErrInvalidName, name)
		case ".", "..":
			return fmt.Errorf("%w %q: %q segment not allowed", ErrInvalidName, name, seg)
		}
	}
	return nil
}

// checkRange validates GetRange arguments that need no knowledge of the
// object.
func checkRange(name string, off, length int64) error {
	if off < 0 || length < -1 {
		return fmt.Errorf("get range %q [off=%d length=%d]: %w", name, off, length, ErrInvalidRange)
	}
	return nil
}

// clampRange resolves a valid range against an object of size bytes and
// returns the [start, end) window to serve.
func clampRange(name string, size, off, length int64) (start, end int64, err error) {
	if off > size {
		return 0, 0, fmt.Errorf("get range %q: offset %d beyond object size %d: %w", name, off, size, ErrInvalidRange)
	}
	end = size
	if length >= 0 && off+length < size {
		end = off + length
	}
	return off, end, nil
}

// ctxReader fails reads once ctx is done, so that a long copy observes
// cancellation between chunks.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

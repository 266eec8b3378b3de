package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// fsTempDir is the directory under the root where Put stages new objects
// before renaming them into place. It lives on the same file system as the
// objects, so the rename is atomic; names under it are reserved.
const fsTempDir = ".strata-tmp"

// FSBucket stores objects as files under a root directory: the name
// "a/b/c" is the file <root>/a/b/c. Writes are atomic (temporary file,
// fsync, rename, fsync of the directory), so a crash leaves either the old
// object or the new one. Because a name cannot be both a file and a
// directory, putting "a" when "a/b" exists (or the reverse) fails.
type FSBucket struct {
	root string
}

var _ Bucket = (*FSBucket)(nil)

// NewFilesystem returns a bucket rooted at dir, creating dir if needed.
func NewFilesystem(dir string) (*FSBucket, error) {
	if dir == "" {
		return nil, errors.New("filesystem bucket: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("filesystem bucket %q: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, fsTempDir), 0o755); err != nil {
		return nil, fmt.Errorf("filesystem bucket %q: create directory: %w", abs, err)
	}
	return &FSBucket{root: abs}, nil
}

// Root returns the absolute directory holding the objects.
func (b *FSBucket) Root() string { return b.root }

func (b *FSBucket) path(op, name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if name == fsTempDir || strings.HasPrefix(name, fsTempDir+"/") {
		return "", fmt.Errorf("%s: %w %q: %q is reserved by the filesystem bucket", op, ErrInvalidName, name, fsTempDir)
	}
	return filepath.Join(b.root, filepath.FromSlash(name)), nil
}

// Put implements Bucket.
func (b *FSBucket) Put(ctx context.Context, name string, r io.Reader, size int64) (err error) {
	target, err := b.path("put", name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %q: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Join(b.root, fsTempDir), "put-*")
	if err != nil {
		return fmt.Errorf("put %q: create temporary file: %w", name, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	n, err := io.Copy(tmp, ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("put %q: write content: %w", name, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("put %q: read %d bytes, expected %d: %w", name, n, size, ErrSizeMismatch)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put %q: fsync: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put %q: close: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %q: %w", name, err)
	}
	dir := filepath.Dir(target)
	// A concurrent Delete may remove the (then empty) parent directory
	// between MkdirAll and Rename; retry a few times in that case.
	for attempt := 0; ; attempt++ {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("put %q: create directory (does a prefix of the name exist as an object?): %w", name, err)
		}
		err = os.Rename(tmpName, target)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrNotExist) && attempt < 5 {
			continue
		}
		if fi, serr := os.Stat(target); serr == nil && fi.IsDir() {
			return fmt.Errorf("put %q: other objects are stored under %q/: %w", name, name, ErrInvalidName)
		}
		return fmt.Errorf("put %q: rename into place: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("put %q: fsync directory: %w", name, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// open opens the regular file behind name, mapping every shape of "not
// there" (missing, a parent that is a file, a directory) to ErrNotFound.
func (b *FSBucket) open(ctx context.Context, op, name string) (*os.File, int64, error) {
	p, err := b.path(op, name)
	if err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("%s %q: %w", op, name, err)
	}
	f, err := os.Open(p)
	if err != nil {
		if isNotExist(err) {
			return nil, 0, fmt.Errorf("%s %q: %w", op, name, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("%s %q: %w", op, name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("%s %q: stat: %w", op, name, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, fmt.Errorf("%s %q: %w", op, name, ErrNotFound)
	}
	return f, fi.Size(), nil
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// fsReader reads a section of a file and closes the file.
type fsReader struct {
	ctxReader
	f *os.File
}

func (r *fsReader) Close() error { return r.f.Close() }

// Get implements Bucket.
func (b *FSBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	f, _, err := b.open(ctx, "get", name)
	if err != nil {
		return nil, err
	}
	return &fsReader{ctxReader{ctx, f}, f}, nil
}

// GetRange implements Bucket.
func (b *FSBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := checkRange(name, off, length); err != nil {
		return nil, err
	}
	f, size, err := b.open(ctx, "get range", name)
	if err != nil {
		return nil, err
	}
	start, end, err := clampRange(name, size, off, length)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &fsReader{ctxReader{ctx, io.NewSectionReader(f, start, end-start)}, f}, nil
}

// Attributes implements Bucket.
func (b *FSBucket) Attributes(ctx context.Context, name string) (Attrs, error) {
	p, err := b.path("attributes", name)
	if err != nil {
		return Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return Attrs{}, fmt.Errorf("attributes %q: %w", name, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		if isNotExist(err) {
			return Attrs{}, fmt.Errorf("attributes %q: %w", name, ErrNotFound)
		}
		return Attrs{}, fmt.Errorf("attributes %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return Attrs{}, fmt.Errorf("attributes %q: %w", name, ErrNotFound)
	}
	return Attrs{Size: fi.Size(), LastModified: fi.ModTime()}, nil
}

// List implements Bucket.
func (b *FSBucket) List(ctx context.Context, prefix string, fn func(name string) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	// Start the walk at the deepest directory the prefix names in full.
	start := b.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(b.root, filepath.FromSlash(prefix[:i]))
		if !strings.HasPrefix(start+string(filepath.Separator), b.root+string(filepath.Separator)) {
			return nil // the prefix climbs out of the root: no object can match
		}
	}
	var names []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && isNotExist(err) {
				return fs.SkipDir
			}
			if isNotExist(err) {
				return nil // removed by a concurrent Delete
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == b.root {
			return nil
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == fsTempDir {
				return fs.SkipDir
			}
			dirPrefix := rel + "/"
			if !strings.HasPrefix(dirPrefix, prefix) && !strings.HasPrefix(prefix, dirPrefix) {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(rel, prefix) {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
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

// Delete implements Bucket. It also removes parent directories left empty,
// up to the root.
func (b *FSBucket) Delete(ctx context.Context, name string) error {
	p, err := b.path("delete", name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("delete %q: %w", name, err)
	}
	if fi.IsDir() {
		return nil // a prefix of other objects, not an object
	}
	if err := os.Remove(p); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	dir := filepath.Dir(p)
	for dir != b.root && strings.HasPrefix(dir, b.root) {
		if os.Remove(dir) != nil {
			break // not empty, or already gone
		}
		dir = filepath.Dir(dir)
	}
	if err := syncDir(dir); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete %q: fsync directory: %w", name, err)
	}
	return nil
}

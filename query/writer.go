package query

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet"
	"github.com/apache/arrow/go/v15/parquet/compress"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/stratamq/strata/broker/message"
)

// Format is an export file format.
type Format string

// Export formats.
const (
	// FormatArrow is the Arrow IPC file format ("Feather v2"): a schema, record batches and
	// a footer indexing them.
	FormatArrow Format = "arrow"
	// FormatParquet is Apache Parquet, one row group per record batch, snappy-compressed.
	FormatParquet Format = "parquet"
)

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatArrow, FormatParquet:
		return Format(s), nil
	case "":
		return FormatArrow, nil
	}
	return "", fmt.Errorf("format %q: want arrow or parquet", s)
}

// Defaults of WriterOptions.
const (
	DefaultBatchRows  = 8192
	DefaultBatchBytes = 8 << 20
)

// WriterOptions configures a FileWriter. Zero fields take the defaults.
type WriterOptions struct {
	Format Format
	// BatchRows and BatchBytes cut a record batch (a Parquet row group) once it holds this
	// many rows or about this many bytes of message data: they bound the writer's memory.
	BatchRows  int
	BatchBytes int
	// Allocator serves the Arrow buffers; nil means the Go allocator.
	Allocator memory.Allocator
}

// FileWriter writes messages as rows of Schema to an Arrow IPC file or a Parquet file,
// streaming a record batch out every BatchRows rows or BatchBytes bytes.
type FileWriter struct {
	opts   WriterOptions
	out    *positionWriter
	rows   *rowBuilder
	ipc    *ipc.FileWriter
	pq     *pqarrow.FileWriter
	n      int64
	closed bool
}

// positionWriter buffers w and answers Seek(0, io.SeekCurrent), the only seek the Arrow
// file writer makes, so exports can go to pipes as well as files.
type positionWriter struct {
	w   *bufio.Writer
	pos int64
}

func (p *positionWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.pos += int64(n)
	return n, err
}

func (p *positionWriter) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekCurrent {
		return 0, errors.New("export writer: only the current position can be asked")
	}
	return p.pos, nil
}

// NewFileWriter starts a file on w. Close writes the footer; w is not closed.
func NewFileWriter(w io.Writer, opts WriterOptions) (*FileWriter, error) {
	if opts.Format == "" {
		opts.Format = FormatArrow
	}
	if opts.BatchRows <= 0 {
		opts.BatchRows = DefaultBatchRows
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	if opts.Allocator == nil {
		opts.Allocator = memory.NewGoAllocator()
	}
	fw := &FileWriter{opts: opts, out: &positionWriter{w: bufio.NewWriterSize(w, 1<<20)}}
	var err error
	switch opts.Format {
	case FormatArrow:
		fw.ipc, err = ipc.NewFileWriter(fw.out, ipc.WithSchema(Schema), ipc.WithAllocator(opts.Allocator))
	case FormatParquet:
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy),
			parquet.WithAllocator(opts.Allocator), parquet.WithMaxRowGroupLength(int64(opts.BatchRows)))
		fw.pq, err = pqarrow.NewFileWriter(Schema, fw.out, props,
			pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(opts.Allocator)))
	default:
		return nil, fmt.Errorf("export writer: unknown format %q", opts.Format)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s file: %w", opts.Format, err)
	}
	fw.rows = newRowBuilder(opts.Allocator)
	return fw, nil
}

// Add appends a message as one row, writing a record batch out when one is full.
func (fw *FileWriter) Add(m *message.Message) error {
	if fw.closed {
		return errors.New("export writer: Add after Close")
	}
	fw.rows.add(m)
	fw.n++
	if fw.rows.rows >= fw.opts.BatchRows || fw.rows.bytes >= fw.opts.BatchBytes {
		return fw.flush()
	}
	return nil
}

// Rows is the number of rows added.
func (fw *FileWriter) Rows() int64 { return fw.n }

func (fw *FileWriter) flush() error {
	rec := fw.rows.flush()
	if rec == nil {
		return nil
	}
	defer rec.Release()
	return fw.write(rec)
}

func (fw *FileWriter) write(rec arrow.Record) error {
	var err error
	if fw.ipc != nil {
		err = fw.ipc.Write(rec)
	} else {
		err = fw.pq.Write(rec)
	}
	if err != nil {
		return fmt.Errorf("write %d rows to the %s file: %w", rec.NumRows(), fw.opts.Format, err)
	}
	return nil
}

// Close writes the last batch and the file's footer and flushes the output. It is
// idempotent; a file with no rows is still a valid file with the schema.
func (fw *FileWriter) Close() error {
	if fw.closed {
		return nil
	}
	fw.closed = true
	defer fw.rows.release()
	err := fw.flush()
	var cerr error
	if fw.ipc != nil {
		cerr = fw.ipc.Close()
	} else {
		cerr = fw.pq.Close()
	}
	if err == nil && cerr != nil {
		err = fmt.Errorf("finish the %s file: %w", fw.opts.Format, cerr)
	}
	if ferr := fw.out.w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write the %s file: %w", fw.opts.Format, ferr)
	}
	return err
}

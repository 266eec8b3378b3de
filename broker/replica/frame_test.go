package replica

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/stratamq/strata/broker/store"
)

func encodeAny(t testing.TB, m any) []byte {
	switch m := m.(type) {
	case *Hello:
		return m.appendTo(nil)
	case *Welcome:
		return m.appendTo(nil)
	case *Data:
		return append(m.appendHead(nil), m.Bytes...)
	case *Heartbeat:
		return m.appendTo(nil)
	case *Watermark:
		return m.appendTo(nil)
	case *Ack:
		return m.appendTo(nil)
	case *Refusal:
		return m.appendTo(nil)
	}
	t.Fatalf("no encoder for %T", m)
	return nil
}

var sampleFrames = []any{
	&Hello{Member: "broker-a-1", Oldest: 0, End: 4096, Epoch: 7, History: []store.EpochStart{{Epoch: 3, StartOffset: 16}, {Epoch: 7, StartOffset: 2000}}},
	&Hello{Member: "m", Oldest: 1 << 30, End: 1<<30 + 16},
	&Welcome{Epoch: 9, TruncateTo: 2000, MasterEnd: 8192, Oldest: 0},
	&Data{Epoch: 9, DataEpoch: 7, Pos: 2000, Bytes: []byte("stored frames")},
	&Heartbeat{Epoch: 9, MasterEnd: 8192},
	&Watermark{Epoch: 9, Pos: 8000},
	&Ack{End: 8192},
	&Refusal{Epoch: 9, Reason: "deposed"},
}

func TestFramesRoundTrip(t *testing.T) {
	var stream []byte
	for _, m := range sampleFrames {
		stream = append(stream, encodeAny(t, m)...)
	}
	fr := &frameReader{r: bytes.NewReader(stream), max: 1 << 20}
	for i, want := range sampleFrames {
		got, err := fr.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if d, ok := got.(*Data); ok {
			d.Bytes = append([]byte(nil), d.Bytes...)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d: got %+v, want %+v", i, got, want)
		}
	}
	if _, err := fr.next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestFrameLimits(t *testing.T) {
	big := encodeAny(t, &Data{Epoch: 1, DataEpoch: 1, Pos: 16, Bytes: make([]byte, 1000)})
	fr := &frameReader{r: bytes.NewReader(big), max: 512}
	if _, err := fr.next(); !errors.Is(err, ErrFrame) {
		t.Fatalf("oversized frame: %v, want ErrFrame", err)
	}
	fr = &frameReader{r: bytes.NewReader(big[:100]), max: 1 << 20}
	if _, err := fr.next(); !errors.Is(err, ErrFrame) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v, want ErrFrame wrapping unexpected EOF", err)
	}
	unordered := encodeAny(t, &Hello{Member: "x", End: 16, History: []store.EpochStart{{Epoch: 5, StartOffset: 16}, {Epoch: 4, StartOffset: 20}}})
	fr = &frameReader{r: bytes.NewReader(unordered), max: 1 << 20}
	if _, err := fr.next(); !errors.Is(err, ErrFrame) {
		t.Fatalf("unordered history: %v, want ErrFrame", err)
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame reader: it returns frames or errors,
// never panics, and what it accepts re-encodes to the bytes it read.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range sampleFrames {
		f.Add(encodeAny(f, m))
	}
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		fr := &frameReader{r: r, max: 1 << 16}
		start := 0
		for {
			m, err := fr.next()
			if err != nil {
				return
			}
			end := len(b) - r.Len()
			if got := encodeAny(t, m); !bytes.Equal(got, b[start:end]) {
				t.Fatalf("%T re-encodes to %x, read from %x", m, got, b[start:end])
			}
			start = end
		}
	})
}

func TestDivergencePoint(t *testing.T) {
	h := func(kv ...int64) []store.EpochStart {
		var out []store.EpochStart
		for i := 0; i < len(kv); i += 2 {
			out = append(out, store.EpochStart{Epoch: kv[i], StartOffset: kv[i+1]})
		}
		return out
	}
	for _, c := range []struct {
		name              string
		master            []store.EpochStart
		masterEnd         int64
		follower          []store.EpochStart
		followerFrom      int64
		followerEnd, want int64
	}{
		{"empty follower", h(3, 16), 5000, nil, 16, 16, 16},
		{"same epoch, follower behind", h(3, 16), 5000, h(3, 16), 16, 1200, 1200},
		{"same epoch, follower ahead", h(3, 16), 5000, h(3, 16), 16, 6000, 5000},
		{"follower wrote under a deposed epoch", h(3, 16, 5, 3000), 9000, h(3, 16, 4, 3500), 16, 4000, 3000},
		{"follower's epoch began later", h(3, 16, 5, 3000), 9000, h(3, 16, 4, 2500), 16, 4000, 2500},
		{"follower has the master's old epochs", h(3, 16, 5, 3000, 8, 7000), 9000, h(3, 16, 5, 3000), 16, 5000, 5000},
		{"legacy epoch 0 data", h(4, 1000), 3000, nil, 16, 2000, 1000},
		{"empty trailing epoch on the follower", h(3, 16), 5000, h(3, 16, 6, 4000), 16, 4000, 4000},
		{"follower restarted at the master's oldest segment", h(3, 16), 9000, nil, 4016, 4016, 4016},
		{"follower's oldest segment is past a divergence", h(3, 16, 5, 100), 9000, h(3, 16), 4016, 6000, 4016},
	} {
		if got := DivergencePoint(c.master, c.masterEnd, c.follower, c.followerFrom, c.followerEnd); got != c.want {
			t.Errorf("%s: divergence %d, want %d", c.name, got, c.want)
		}
	}
}

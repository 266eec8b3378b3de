package broker

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func openIncarnations(t *testing.T, path string) *incarnations {
	t.Helper()
	in, err := loadIncarnations(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.close() })
	return in
}

func incarnationMap(in *incarnations) map[string]int64 {
	m := map[string]int64{}
	for _, t := range in.topics() {
		m[t], _ = in.get(t)
	}
	return m
}

func TestIncarnationsSurviveReopenAndCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topic-incarnations")
	in := openIncarnations(t, path)
	for i := 0; i < 5; i++ {
		if err := in.record("A", int64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.record("B", 7); err != nil {
		t.Fatal(err)
	}
	if err := in.record("C", 9); err != nil {
		t.Fatal(err)
	}
	if err := in.record("C", 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"A": 14, "B": 7}
	if got := incarnationMap(in); !maps.Equal(got, want) {
		t.Fatalf("before reopen: %v, want %v", got, want)
	}
	if err := in.close(); err != nil {
		t.Fatal(err)
	}
	if err := in.record("D", 1); err == nil {
		t.Fatal("record after close succeeded")
	}
	again := openIncarnations(t, path)
	if got := incarnationMap(again); !maps.Equal(got, want) {
		t.Fatalf("after reopen: %v, want %v", got, want)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(raw), "\n"); lines != 3 {
		t.Fatalf("compacted file has %d lines, want a header and one per topic:\n%s", lines, raw)
	}
}

func TestIncarnationsConcurrentRecordsAllLand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topic-incarnations")
	in := openIncarnations(t, path)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := in.record(fmt.Sprintf("T%d-%d", g, i), int64(g*1000+i+1)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	_ = in.close()
	again := openIncarnations(t, path)
	got := incarnationMap(again)
	if len(got) != 16*50 {
		t.Fatalf("%d topics after reopen, want %d", len(got), 16*50)
	}
	if got["T3-7"] != 3008 {
		t.Fatalf("T3-7 = %d, want 3008", got["T3-7"])
	}
}

func TestIncarnationsFileDecoding(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       map[string]int64
		err        string
	}{
		{"version 1", `{"v":1,"topics":{"A":3,"B":4}}`, map[string]int64{"A": 3, "B": 4}, ""},
		{"torn last line", "{\"v\":2}\n{\"t\":\"A\",\"r\":3}\n{\"t\":\"B\",\"r", map[string]int64{"A": 3}, ""},
		{"last record without newline", "{\"v\":2}\n{\"t\":\"A\",\"r\":3}\n{\"t\":\"A\",\"r\":5}", map[string]int64{"A": 3}, ""},
		{"corrupt middle line", "{\"v\":2}\n{\"t\":\"A\",\"r\":3}\ngarbage\n{\"t\":\"B\",\"r\":1}\n", nil, "line 3"},
		{"future version", "{\"v\":3}\n", nil, "version 3"},
		{"not json", "hello", nil, "not a topic-incarnations file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseIncarnations([]byte(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIncarnationsCorruptFileSaysWhatToDo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topic-incarnations")
	if err := os.WriteFile(path, []byte("{\"v\":2}\nnope\n{\"t\":\"A\",\"r\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadIncarnations(path)
	if err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("err = %v, want advice to move the file aside", err)
	}
}

func FuzzParseIncarnations(f *testing.F) {
	f.Add([]byte(`{"v":1,"topics":{"A":3}}`))
	f.Add([]byte("{\"v\":2}\n{\"t\":\"A\",\"r\":3}\n{\"t\":\"A\",\"r\":0}\n"))
	f.Add([]byte("{\"v\":2}\n{\"t\":\"A\",\"r\":3}\n{\"t\""))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := parseIncarnations(raw)
		if err != nil {
			return
		}
		for topic, rev := range m {
			if topic == "" || rev <= 0 {
				t.Fatalf("parsed a record that is not live: %q=%d", topic, rev)
			}
		}
		// What the file says survives a compacting rewrite.
		in := &incarnations{path: filepath.Join(t.TempDir(), "inc")}
		if err := in.rewrite(m); err != nil {
			t.Fatal(err)
		}
		again, err := os.ReadFile(in.path)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := parseIncarnations(again)
		if err != nil || !maps.Equal(m, m2) {
			t.Fatalf("rewrite changed the map: %v -> %v (%v)", m, m2, err)
		}
	})
}

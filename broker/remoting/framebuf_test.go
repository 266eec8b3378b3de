package remoting

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"
)

func TestFrameClass(t *testing.T) {
	seen := map[int]int{} // pool index → capacity
	for _, n := range []int{minPooledFrameBytes + 1, 5 << 10, 5<<10 + 1, 6 << 10, 8 << 10, 8<<10 + 1,
		256<<10 + 300, 281_987, 1 << 20, 1<<20 + 1, maxPooledFrameBytes - 1, maxPooledFrameBytes} {
		idx, capacity := frameClass(n)
		if idx < 0 || idx >= len(frameBufs) {
			t.Fatalf("frameClass(%d) = pool %d of %d", n, idx, len(frameBufs))
		}
		if capacity < n || capacity > n+n/4 {
			t.Errorf("frameClass(%d) capacity %d: want n ≤ capacity ≤ 5n/4", n, capacity)
		}
		if c, ok := seen[idx]; ok && c != capacity {
			t.Errorf("pool %d holds capacities %d and %d", idx, c, capacity)
		}
		seen[idx] = capacity
	}
	if idx, _ := frameClass(maxPooledFrameBytes); idx != len(frameBufs)-1 {
		t.Errorf("the largest frame takes pool %d, want the last, %d", idx, len(frameBufs)-1)
	}
}

func TestGetFrameBufSizes(t *testing.T) {
	for _, n := range []int{1, minPooledFrameBytes, minPooledFrameBytes + 1, 300 << 10, maxPooledFrameBytes + 1} {
		b := getFrameBuf(n)
		if len(b) != n {
			t.Fatalf("getFrameBuf(%d) has length %d", n, len(b))
		}
		putFrameBuf(b)
		if b := getFrameBuf(n); len(b) != n {
			t.Fatalf("getFrameBuf(%d) after a put has length %d", n, len(b))
		}
	}
}

// TestReleasedFramesOnlyAreReused pulls large responses on one client connection, releasing
// every other one. Released buffers are poisoned as they go back, so a response that was
// not released, and so still owns its frame, shows if a later frame was read into it.
func TestReleasedFramesOnlyAreReused(t *testing.T) {
	poisonReleasedFrames.Store(true)
	t.Cleanup(func() { poisonReleasedFrames.Store(false) })
	body := func(i int) []byte {
		return bytes.Repeat([]byte(strconv.Itoa(i)+"-"), (200<<10)/len(strconv.Itoa(i)+"-"))
	}
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		i, _ := strconv.Atoi(req.ExtFields["i"])
		resp := NewResponse(req, RespSuccess, "")
		resp.Body = body(i)
		return resp
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	var mu sync.Mutex
	kept := map[int]*Command{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 16 {
				i := g*16 + j
				resp, err := c.Invoke(testCtx(t), NewRequest(CodePullMessage, ExtFields{"i": strconv.Itoa(i)}, nil))
				if err != nil {
					t.Errorf("invoke %d: %v", i, err)
					return
				}
				if !bytes.Equal(resp.Body, body(i)) {
					t.Errorf("response %d: body differs from what was sent", i)
				}
				if i%2 == 0 {
					resp.Release()
					if resp.Body != nil {
						t.Errorf("response %d: Body survives Release", i)
					}
					resp.Release() // a second call does nothing
					continue
				}
				mu.Lock()
				kept[i] = resp
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, resp := range kept {
		if !bytes.Equal(resp.Body, body(i)) {
			t.Errorf("kept response %d was overwritten by a later frame", i)
		}
	}
}

// TestReleaseOfUnpooledCommands: commands that hold no recycled buffer (built here, or
// decoded from bytes by DecodeFrame) release as a no-op and keep their Body.
func TestReleaseOfUnpooledCommands(t *testing.T) {
	body := make([]byte, 64<<10)
	built := NewRequest(CodeSendMessage, nil, body)
	built.Release()
	if len(built.Body) != len(body) {
		t.Fatal("Release cleared the body of a command built in memory")
	}
	frame, err := EncodeFrame(built)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := DecodeFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	decoded.Release()
	if len(decoded.Body) != len(body) {
		t.Fatal("Release cleared the body of a command decoded by DecodeFrame")
	}
}

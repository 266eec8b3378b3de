package netcut

import (
	"bufio"
	"net"
	"testing"
)

// TestCutDropsAndRefusesUntilRestored echoes through the proxy, cuts it (the open
// connection ends, a new one is closed at once), then restores it.
func TestCutDropsAndRefusesUntilRestored(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	p := New(t, ln.Addr().String())
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_, err := bufio.NewReader(c).ReadString('\n')
		return err
	}
	open, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := echo(open); err != nil {
		t.Fatalf("echo through the proxy: %v", err)
	}
	p.SetCut(true)
	if err := echo(open); err == nil {
		t.Fatal("an open connection still echoed after the cut")
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		if echo(c) == nil {
			t.Fatal("a new connection echoed while cut")
		}
		c.Close()
	}
	p.SetCut(false)
	again, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := echo(again); err != nil {
		t.Fatalf("echo after restoring: %v", err)
	}
}

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmeUsingIt runs the shell block(s) of README.md's "Using it" section, line by line,
// as a user pastes them after `make run`: from a directory holding ./bin/strata, against a
// fresh `strata dev`. The only differences are the addresses: the dev process listens on free
// ports, so STRATA_NAMESRV points the CLI at it and the HTTP address in the lines is replaced.
// Every line must exit 0, and the first group consume must print what the produce lines sent.
func TestReadmeUsingIt(t *testing.T) {
	lines := readmeCommands(t, "../README.md", "Using it")
	if len(lines) < 10 {
		t.Fatalf("the Using it section has %d commands; is the fenced sh block still there?", len(lines))
	}
	dev := startDev(t, t.TempDir())
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strataBin, filepath.Join(work, "bin", "strata")); err != nil {
		t.Fatal(err)
	}
	consumed := false
	for _, line := range lines {
		cmdline := strings.ReplaceAll(line, "127.0.0.1:8080", dev.HTTP)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", cmdline)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "STRATA_NAMESRV="+dev.Namesrv)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("README line failed: %s\n%v\nstdout:\n%s\nstderr:\n%s", line, err, out.String(), errb.String())
		}
		t.Logf("$ %s\n%s", line, out.String())
		if !consumed && strings.Contains(line, "consume") && strings.Contains(line, "--group") {
			consumed = true
			for _, want := range []string{"keys=order-1 paid 30 EUR", "keys=order-2 paid 12 EUR", "tags=refund refund order-1"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("the README's group consume did not print %q:\n%s", want, out.String())
				}
			}
		}
	}
	if !consumed {
		t.Fatal("the Using it section has no `consume --group` line")
	}
	if _, err := os.Stat(filepath.Join(work, "orders.arrow")); err != nil {
		t.Errorf("the README's export wrote no file: %v", err)
	}
}

// readmeCommands returns the commands of the ```sh blocks under the "## <section>" heading,
// one per line (a trailing backslash continues a line).
func readmeCommands(t *testing.T, path, section string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in, fenced, cont := false, false, ""
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "## "):
			in = strings.TrimSpace(strings.TrimPrefix(l, "## ")) == section
		case !in:
		case strings.HasPrefix(l, "```sh"):
			fenced = true
		case strings.HasPrefix(l, "```"):
			fenced = false
		case fenced:
			l = cont + l
			if strings.HasSuffix(l, "\\") {
				cont = strings.TrimSuffix(l, "\\") + " "
				continue
			}
			cont = ""
			if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
				out = append(out, s)
			}
		}
	}
	return out
}

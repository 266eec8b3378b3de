package timer

import (
	"os"
	"path/filepath"
	"testing"
)

// damageIndex breaks the timer index in dir the way a disk or an operator could.
func damageIndex(t *testing.T, dir, how string) {
	t.Helper()
	switch how {
	case "deleted":
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	case "corrupt manifest":
		p := filepath.Join(dir, manifestName)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 0xFF
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	case "truncated run":
		runs, _ := filepath.Glob(filepath.Join(dir, runPrefix+"*"+runExt))
		if len(runs) == 0 {
			t.Fatal("no run to truncate")
		}
		st, _ := os.Stat(runs[0])
		if err := os.Truncate(runs[0], st.Size()-7); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown damage %q", how)
	}
}

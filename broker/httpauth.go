package broker

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"net/netip"
	"strings"
)

// The HTTP listener's endpoints fall in three classes:
//
//	probes   /healthz, /readyz              always open: orchestrators probe without secrets
//	reads    /metrics, /tier/status         open, unless HTTPConfig.ProtectReads
//	admin    /debug/pprof/ (when Pprof),    anything that changes state or exposes the
//	         and any endpoint added later   process: behind the admin check
//	         that changes state
//
// The admin check: with AdminToken set, a request must carry "Authorization: Bearer
// <token>"; with ACL on, HTTP basic auth with an admin account's access key and secret key
// also passes (curl -u AK:SK). With ACL on and neither given, admin endpoints refuse
// everyone. With ACL off and no token, they are open (pprof is off by default).

// HTTPConfig configures the broker's HTTP endpoints.
type HTTPConfig struct {
	// Pprof serves Go's profiles under /debug/pprof/. Off by default: profiles expose the
	// process's code paths and memory, and a CPU profile costs CPU.
	Pprof bool
	// AdminToken, when set, is the bearer token admin endpoints require.
	AdminToken string
	// ProtectReads puts /metrics and /tier/status behind the admin check too.
	ProtectReads bool
}

// httpAdmin wraps an admin endpoint.
func (b *Broker) httpAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, why := b.httpAdminAllowed(r); !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="strata", Basic realm="strata"`)
			http.Error(w, why, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// httpRead wraps a read endpoint: open unless ProtectReads.
func (b *Broker) httpRead(h http.Handler) http.Handler {
	if !b.cfg.HTTP.ProtectReads {
		return h
	}
	return b.httpAdmin(h)
}

func (b *Broker) httpAdminAllowed(r *http.Request) (bool, string) {
	token := b.cfg.HTTP.AdminToken
	if token == "" && b.acl == nil {
		return true, ""
	}
	auth := r.Header.Get("Authorization")
	if bearer, ok := strings.CutPrefix(auth, "Bearer "); ok && token != "" {
		if equalSecret(bearer, token) {
			return true, ""
		}
		return false, "wrong bearer token\n"
	}
	if ak, sk, ok := r.BasicAuth(); ok && b.acl != nil {
		remote, _ := netip.ParseAddrPort(r.RemoteAddr)
		if err := b.acl.VerifyAdminSecret(ak, sk, remote.Addr()); err != nil {
			return false, err.Error() + "\n"
		}
		return true, ""
	}
	switch {
	case token != "" && b.acl != nil:
		return false, "this endpoint needs the admin token (Authorization: Bearer <http.admin_token>) or an ACL admin account (curl -u AK:SK)\n"
	case token != "":
		return false, "this endpoint needs the admin token (Authorization: Bearer <http.admin_token>)\n"
	}
	return false, "ACL is on: this endpoint needs an ACL admin account (curl -u AK:SK) or an http.admin_token\n"
}

// equalSecret compares in constant time, whatever the lengths.
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return hmac.Equal(ha[:], hb[:])
}

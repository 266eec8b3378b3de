package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
)

// Defaults of Config.
const (
	DefaultRefreshInterval  = 5 * time.Second
	DefaultMaxSearchResults = 50
	DefaultBodyPreviewBytes = 4 << 10
	DefaultTxnPendingLimit  = 100
	DefaultRateWindow       = time.Minute
	DefaultMaxTraceRecords  = 500
)

// Largest values Config accepts: a page past them is slow to build and to read.
const (
	maxSearchResultsLimit = 1000
	maxBodyPreviewLimit   = 1 << 20
	maxTxnPendingLimit    = 10000
)

// Config configures the console. The zero value serves with the defaults and no login.
type Config struct {
	// Auth, when set, wraps the whole console (pages, forms and assets): an access check
	// that answers 401 or 403 itself and calls the wrapped handler when the request may
	// pass. nil serves without login (ACL off). The ACL (broker/acl) plugs its access key
	// and secret check in here.
	Auth func(http.Handler) http.Handler
	// RefreshInterval is how often pages with live figures (topics, group lag) refresh
	// themselves through htmx. Default 5s; negative turns live refresh off.
	RefreshInterval time.Duration
	// MaxSearchResults bounds the messages a search shows (and the limit a user may ask
	// for). Default 50, at most 1000.
	MaxSearchResults int
	// BodyPreviewBytes bounds the part of a message body shown (after decompression).
	// Default 4 KiB, at most 1 MiB.
	BodyPreviewBytes int
	// TxnPendingLimit bounds the pending transactions listed. Default 100, at most 10000.
	TxnPendingLimit int
	// RateWindow is the span produce rates are averaged over. Default 1 minute.
	RateWindow time.Duration
	// MaxTraceRecords bounds the trace records shown for one lookup. Default 500.
	MaxTraceRecords int
	// Logger records failed requests; default slog.Default().
	Logger *slog.Logger
}

// Validate fills defaults and checks the limits.
func (c *Config) Validate() error {
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.MaxSearchResults == 0 {
		c.MaxSearchResults = DefaultMaxSearchResults
	}
	if c.BodyPreviewBytes == 0 {
		c.BodyPreviewBytes = DefaultBodyPreviewBytes
	}
	if c.TxnPendingLimit == 0 {
		c.TxnPendingLimit = DefaultTxnPendingLimit
	}
	if c.RateWindow == 0 {
		c.RateWindow = DefaultRateWindow
	}
	if c.MaxTraceRecords == 0 {
		c.MaxTraceRecords = DefaultMaxTraceRecords
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.MaxSearchResults < 0 || c.MaxSearchResults > maxSearchResultsLimit:
		return fmt.Errorf("console config: MaxSearchResults %d must be in 1..%d", c.MaxSearchResults, maxSearchResultsLimit)
	case c.BodyPreviewBytes < 0 || c.BodyPreviewBytes > maxBodyPreviewLimit:
		return fmt.Errorf("console config: BodyPreviewBytes %d must be in 1..%d", c.BodyPreviewBytes, maxBodyPreviewLimit)
	case c.TxnPendingLimit < 0 || c.TxnPendingLimit > maxTxnPendingLimit:
		return fmt.Errorf("console config: TxnPendingLimit %d must be in 1..%d", c.TxnPendingLimit, maxTxnPendingLimit)
	case c.RateWindow < time.Second:
		return fmt.Errorf("console config: RateWindow %s must be at least 1s", c.RateWindow)
	case c.MaxTraceRecords < 0:
		return errors.New("console config: MaxTraceRecords must not be negative")
	}
	return nil
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// HTMXAsset is the vendored htmx file under /console/assets/ (see assets/README.md).
const HTMXAsset = "htmx-2.0.11.min.js"

// pageNames are the templates under templates/ that render a whole page on layout.html.
var pageNames = []string{"overview", "topics", "topic", "groups", "group", "confirm", "messages", "trace", "transactions", "timers", "error"}

// pages are parsed once: the templates are part of the binary, so a parse error is a
// build mistake that every test run catches.
var pages = func() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(templateFuncs).ParseFS(templateFS, "templates/layout.html"))
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	return out
}()

// console serves the pages over a Source.
type console struct {
	src   Source
	cfg   Config
	rates *rateMeter
}

// New returns the console's handler: the overview at / and /console/, the other pages under
// /console/ and the embedded assets under /console/assets/. Reading pages never changes
// anything; the one form that does (a group's offset reset) is a POST that asks for
// confirmation first and refuses cross-origin requests.
func New(src Source, cfg Config) (http.Handler, error) {
	if src == nil {
		return nil, errors.New("console: New needs a Source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &console{src: src, cfg: cfg, rates: newRateMeter(cfg.RateWindow)}
	assets, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, fmt.Errorf("console: embedded assets: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.serveOverview)
	mux.HandleFunc("GET /console/{$}", c.serveOverview)
	mux.HandleFunc("GET /console/topics", c.serveTopics)
	mux.HandleFunc("GET /console/topics/{topic}", c.serveTopic)
	mux.HandleFunc("GET /console/groups", c.serveGroups)
	mux.HandleFunc("GET /console/groups/{group}", c.serveGroup)
	mux.HandleFunc("POST /console/groups/{group}/reset", c.serveReset)
	mux.HandleFunc("GET /console/messages", c.serveMessages)
	mux.HandleFunc("GET /console/trace", c.serveTrace)
	mux.HandleFunc("GET /console/transactions", c.serveTransactions)
	mux.HandleFunc("GET /console/timers", c.serveTimers)
	mux.Handle("GET /console/assets/", http.StripPrefix("/console/assets/", cacheAssets(http.FileServerFS(assets))))
	mux.HandleFunc("/", c.notFound)

	// State changes are POSTs; a page of another site must not be able to make a
	// browser send one (no login means no session cookie to guard otherwise).
	var h http.Handler = http.NewCrossOriginProtection().Handler(securityHeaders(mux))
	if cfg.Auth != nil {
		h = cfg.Auth(h)
	}
	return h, nil
}

// securityHeaders keeps the pages from being framed or run with scripts of elsewhere.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// cacheAssets lets browsers keep the assets: htmx's file name carries its version.
func cacheAssets(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// page is what layout.html renders around a page's content.
type page struct {
	Title string
	// Nav is the navigation entry to highlight.
	Nav string
	// Refresh is the live-refresh interval for htmx ("" when off), as hx-trigger wants it.
	Refresh string
	// Self is the request's path and query, for live refresh and forms.
	Self string
	HTMX string
	Data any
}

// render writes a page; a template error is logged and answered 500 before anything was
// sent, since the page is rendered into a buffer first.
func (c *console) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	p := page{Title: title, Nav: nav, Self: r.URL.RequestURI(), HTMX: HTMXAsset, Data: data}
	if c.cfg.RefreshInterval > 0 {
		p.Refresh = fmt.Sprintf("every %dms", c.cfg.RefreshInterval.Milliseconds())
	}
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.cfg.Logger.Error("console: render page", "page", name, "err", err)
		http.Error(w, "console: rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage is the data of error.html.
type errorPage struct {
	Status  int
	Message string
	// Back links to the page to return to.
	Back string
}

func (c *console) fail(w http.ResponseWriter, r *http.Request, err error, back string) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		status = http.StatusBadRequest
	default:
		c.cfg.Logger.Warn("console: request failed", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, status, "error", http.StatusText(status), "", errorPage{Status: status, Message: err.Error(), Back: back})
}

func (c *console) notFound(w http.ResponseWriter, r *http.Request) {
	c.fail(w, r, fmt.Errorf("%w: no console page at %s", ErrNotFound, r.URL.Path), "/")
}

// invalid wraps a message about a bad request parameter.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

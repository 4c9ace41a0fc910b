package metrics

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// net/http/pprof registers itself on http.DefaultServeMux when imported,
// which is global state this bridge does not want; these few handlers give
// `go tool pprof` what it needs on the metrics mux only.

// maxProfileSeconds bounds a CPU profile or trace request.
const maxProfileSeconds = 300

func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/{$}", pprofIndex)
	mux.HandleFunc("GET /debug/pprof/profile", cpuProfile)
	mux.HandleFunc("GET /debug/pprof/trace", execTrace)
	mux.HandleFunc("GET /debug/pprof/{name}", namedProfile)
}

func pprofIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "profile?seconds=N  CPU profile")
	fmt.Fprintln(w, "trace?seconds=N    execution trace")
	for _, p := range pprof.Profiles() {
		fmt.Fprintf(w, "%-18s %d\n", p.Name(), p.Count())
	}
}

func seconds(r *http.Request, def int) (time.Duration, error) {
	s := def
	if v := r.URL.Query().Get("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxProfileSeconds {
			return 0, fmt.Errorf("seconds must be between 1 and %d", maxProfileSeconds)
		}
		s = n
	}
	return time.Duration(s) * time.Second, nil
}

// Both timed endpoints record for ?seconds=N into the response: the CPU
// profile (30 s unless asked) and the execution trace (1 s unless asked).
var (
	cpuProfile = timedProfile("profile", "CPU profile", 30, pprof.StartCPUProfile, pprof.StopCPUProfile)
	execTrace  = timedProfile("trace", "trace", 1, trace.Start, trace.Stop)
)

// timedProfile serves a recording that start begins into the response and
// stop ends after the requested time; filename names the download.
func timedProfile(filename, what string, defSeconds int, start func(io.Writer) error, stop func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := seconds(r, defSeconds)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
		if err := start(w); err != nil {
			// Another recording is running; the header is not written yet.
			http.Error(w, "could not start "+what+": "+err.Error(), http.StatusConflict)
			return
		}
		sleep(r, d)
		stop()
	}
}

// namedProfile serves heap, allocs, goroutine, block, mutex and
// threadcreate; ?debug=1 or 2 gives text, ?gc=1 runs a GC before a heap
// profile.
func namedProfile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := pprof.Lookup(name)
	if p == nil || strings.ContainsAny(name, "/.") {
		http.Error(w, "unknown profile", http.StatusNotFound)
		return
	}
	debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
	if name == "heap" && r.URL.Query().Get("gc") == "1" {
		runtime.GC()
	}
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename=%q`, name))
	}
	_ = p.WriteTo(w, debug)
}

// sleep waits d or until the client goes away.
func sleep(r *http.Request, d time.Duration) {
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
}

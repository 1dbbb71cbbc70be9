// Command eventlog is the event sink of `make cluster-test`'s Eventing tests (an event_display
// that keeps what it saw): an HTTP server on $PORT that records every request it is sent -- arrival
// time, method, path, every header value as the raw bytes that crossed the wire, the body -- and
// answers it 200, or with a status the test asked for:
//
//	POST/PUT/... <any path>              recorded; 200, unless the path is /status/<code>/<n>: the
//	                                      first <n> requests to that path get <code>, later ones 200
//	                                      (to watch a dispatcher's retries, backoff and dead letters)
//	GET /_events                          every recorded request, JSON; header values and body base64
//	DELETE /_events                       forget them (and the /status counters)
//
// Byte for byte: Go's HTTP server keeps header values as received (no decoding), so base64 of
// them is exactly what the sender wrote. It keeps state in memory, so it runs with min-scale 1.
package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type record struct {
	Time    string              `json:"time"`
	Unix    float64             `json:"unix"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"` // lowercased name -> base64 values
	Body    string              `json:"body"`    // base64
	Status  int                 `json:"status"`
}

type sink struct {
	mu      sync.Mutex
	records []record
	counts  map[string]int
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_events" {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			out := s.records
			if out == nil {
				out = []record{}
			}
			_ = json.NewEncoder(w).Encode(out)
		case http.MethodDelete:
			s.records, s.counts = nil, map[string]int{}
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
		return
	}
	if r.Method == http.MethodGet && (r.URL.Path == "/healthz" || r.URL.Path == "/") {
		w.WriteHeader(http.StatusOK)
		return
	}
	body, _ := io.ReadAll(r.Body)
	now := time.Now()
	headers := map[string][]string{}
	for name, values := range r.Header {
		for _, v := range values {
			headers[strings.ToLower(name)] = append(headers[strings.ToLower(name)], base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	status := http.StatusOK
	s.mu.Lock()
	if parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/"); len(parts) == 3 && parts[0] == "status" {
		code, err1 := strconv.Atoi(parts[1])
		n, err2 := strconv.Atoi(parts[2])
		if err1 == nil && err2 == nil && code >= 100 && code < 600 {
			if s.counts[r.URL.Path] < n {
				status = code
			}
			s.counts[r.URL.Path]++
		}
	}
	s.records = append(s.records, record{
		Time: now.UTC().Format(time.RFC3339Nano), Unix: float64(now.UnixNano()) / 1e9,
		Method: r.Method, Path: r.URL.Path, Headers: headers,
		Body: base64.StdEncoding.EncodeToString(body), Status: status,
	})
	s.mu.Unlock()
	w.WriteHeader(status)
	if status >= 300 {
		_, _ = w.Write([]byte("eventlog: asked to answer " + strconv.Itoa(status)))
	}
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log.Printf("eventlog: listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, &sink{counts: map[string]int{}}))
}

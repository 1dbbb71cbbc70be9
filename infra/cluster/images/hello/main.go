// Command hello is the test function of `make cluster-test`: an HTTP server on $PORT (Knative
// sets it) that answers every request with its revision, pod and the Knative headers it was
// given, so a test can see which revision served it and that the KIngress added the headers.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	started := time.Now()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"revision":  os.Getenv("K_REVISION"),
			"pod":       os.Getenv("HOSTNAME"),
			"message":   os.Getenv("MESSAGE"),
			"uptime_s":  time.Since(started).Seconds(),
			"host":      r.Host,
			"path":      r.URL.Path,
			"namespace": r.Header.Get("Knative-Serving-Namespace"),
			"kRevision": r.Header.Get("Knative-Serving-Revision"),
		})
	})
	log.Printf("hello: listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

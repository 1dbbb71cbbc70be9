// Command pause holds a pod's namespaces open: it sleeps until SIGINT or SIGTERM, as the
// Kubernetes pause container does, and exits 0. Built statically into ripple's pause image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		println("ripple pause")
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	signal.Ignore(syscall.SIGCHLD)
	<-sig
}

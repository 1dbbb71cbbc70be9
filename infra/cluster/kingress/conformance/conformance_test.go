//go:build conformance

// Package conformance runs knative.dev/networking's ingress conformance suite against ripple's
// KIngress (see ../README.md, "Conformance"). It is compiled with `go test -c -tags conformance`
// and run inside the cluster's network namespace, where the Ingress's load balancer IP is.
package conformance

import (
	"testing"

	"knative.dev/networking/test/conformance/ingress"
)

func TestIngressConformance(t *testing.T) {
	ingress.RunConformance(t)
}

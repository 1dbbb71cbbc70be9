// Table: the routing rules of every owned Ingress, flattened to host -> ordered paths, swapped
// atomically so requests never see a half-built table.
package main

import (
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/networking/pkg/ingress"
)

// Route is one path of one rule, with the Ingress it came from (for logs).
type Route struct {
	Ingress    string
	Visibility v1alpha1.IngressVisibility
	Path       v1alpha1.HTTPIngressPath
}

// Table maps a host (without port) to its routes, in the Ingress's order.
type Table struct {
	hosts atomic.Pointer[map[string][]Route]
}

// Store replaces the table with the rules of the given Ingresses.
func (t *Table) Store(ings []*v1alpha1.Ingress) {
	hosts := map[string][]Route{}
	for _, ing := range ings {
		// Knative's probe contract: a request carrying K-Network-Hash "override" gets the hash of
		// the Ingress version that routed it (networking's own InsertProbe adds those paths).
		ing = ing.DeepCopy()
		if _, err := ingress.InsertProbe(ing); err != nil {
			log.Printf("kingress: %s/%s: %v", ing.Namespace, ing.Name, err)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, host := range rule.Hosts {
				for _, p := range rule.HTTP.Paths {
					hosts[strings.ToLower(host)] = append(hosts[strings.ToLower(host)], Route{Ingress: ing.Namespace + "/" + ing.Name, Visibility: rule.Visibility, Path: p})
				}
			}
		}
	}
	t.hosts.Store(&hosts)
}

// Match returns the first route of the request's host whose path prefix and headers match; the
// public listener (private false) sees only the rules of visibility ExternalIP.
func (t *Table) Match(r *http.Request, private bool) (Route, bool) {
	m := t.hosts.Load()
	if m == nil {
		return Route{}, false
	}
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, route := range (*m)[host] {
		if !private && route.Visibility == v1alpha1.IngressVisibilityClusterLocal {
			continue // cluster-local hosts are served on the private listener only
		}
		if !strings.HasPrefix(r.URL.Path, route.Path.Path) {
			continue
		}
		ok := true
		for name, want := range route.Path.Headers {
			if r.Header.Get(name) != want.Exact {
				ok = false
				break
			}
		}
		if ok {
			return route, true
		}
	}
	return Route{}, false
}

// Pick chooses a split by its percent (a single split, or all at zero, takes the first).
func Pick(splits []v1alpha1.IngressBackendSplit) (v1alpha1.IngressBackendSplit, bool) {
	if len(splits) == 0 {
		return v1alpha1.IngressBackendSplit{}, false
	}
	total := 0
	for _, s := range splits {
		total += s.Percent
	}
	if total == 0 {
		return splits[0], true
	}
	n := rand.IntN(total)
	for _, s := range splits {
		if n < s.Percent {
			return s, true
		}
		n -= s.Percent
	}
	return splits[len(splits)-1], true
}

// Proxy: the data path. Finds the route, applies the rewrite-host hop, picks a split, appends its
// headers and forwards to a ready endpoint of the backend Service (its ClusterIP when it has
// none listed; h2c when the port says HTTP/2).
package main

import (
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
)

// Proxy serves every request the table knows, 404 otherwise.
type Proxy struct {
	Private   bool // the private (cluster-local) listener: serves every visibility
	Table     *Table
	Services  corelisters.ServiceLister
	Endpoints discoverylisters.EndpointSliceLister
}

var (
	http1 = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 100, ForceAttemptHTTP2: false}
	h2c   = func() *http.Transport {
		t := &http.Transport{Proxy: nil}
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
		return t
	}()
)

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, ok := p.Table.Match(r, p.Private)
	if ok && route.Path.RewriteHost != "" {
		// A DomainMapping: serve as if the request had come for the rewritten host, which is
		// usually cluster-local, hence looked up with every visibility.
		r.Host = route.Path.RewriteHost
		route, ok = p.Table.Match(r, true)
	}
	if !ok {
		http.Error(w, fmt.Sprintf("kingress: no Ingress routes host %q path %q", r.Host, r.URL.Path), http.StatusNotFound)
		return
	}
	split, ok := Pick(route.Path.Splits)
	if !ok {
		http.Error(w, "kingress: the route of "+route.Ingress+" has no backend", http.StatusServiceUnavailable)
		return
	}
	target, isH2C, err := p.backend(split.IngressBackend)
	if err != nil {
		http.Error(w, "kingress: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	for k, v := range route.Path.AppendHeaders {
		r.Header.Set(k, v)
	}
	for k, v := range split.AppendHeaders {
		r.Header.Set(k, v)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		FlushInterval: -1,
		Transport:     http1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			log.Printf("kingress: %s -> %s: %v", route.Ingress, target, err)
			http.Error(w, "kingress: backend unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}
	if isH2C {
		rp.Transport = h2c
	}
	rp.ServeHTTP(w, r)
}

// backend resolves a split's Service to its ClusterIP and port number.
func (p *Proxy) backend(b v1alpha1.IngressBackend) (*url.URL, bool, error) {
	svc, err := p.Services.Services(b.ServiceNamespace).Get(b.ServiceName)
	if err != nil {
		return nil, false, fmt.Errorf("service %s/%s: %w", b.ServiceNamespace, b.ServiceName, err)
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		if (b.ServicePort.Type == 0 && sp.Port == b.ServicePort.IntVal) || (b.ServicePort.Type == 1 && sp.Name == b.ServicePort.StrVal) {
			port = sp
			break
		}
	}
	if port == nil {
		return nil, false, fmt.Errorf("service %s/%s has no port %s", b.ServiceNamespace, b.ServiceName, b.ServicePort.String())
	}
	isH2C := port.Name == "http2" || port.Name == "h2c" || (port.AppProtocol != nil && *port.AppProtocol == "kubernetes.io/h2c")
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return &url.URL{Scheme: "http", Host: net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(port.Port)))}, isH2C, nil
	}
	// A ready endpoint of the Service, as Envoy-based ingresses do: kube-proxy's rules for a new
	// Service can lag behind its EndpointSlices, and the Ingress is reported Ready on the latter.
	if addr, ok := p.endpoint(svc.Namespace, svc.Name, port.Name); ok {
		return &url.URL{Scheme: "http", Host: addr}, isH2C, nil
	}
	host := svc.Spec.ClusterIP
	if host == "" || host == corev1.ClusterIPNone {
		host = fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, svc.Namespace)
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(int(port.Port)))}, isH2C, nil
}

// endpoint picks a ready address of the Service's EndpointSlices for the named port.
func (p *Proxy) endpoint(namespace, service, portName string) (string, bool) {
	eps, err := p.Endpoints.EndpointSlices(namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service}))
	if err != nil {
		return "", false
	}
	var addrs []string
	for _, s := range eps {
		var portNum int32 = -1
		for _, sp := range s.Ports {
			if sp.Port != nil && (sp.Name == nil && portName == "" || sp.Name != nil && *sp.Name == portName) {
				portNum = *sp.Port
			}
		}
		if portNum < 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(int(portNum))))
			}
		}
	}
	if len(addrs) == 0 {
		return "", false
	}
	return addrs[rand.IntN(len(addrs))], true
}

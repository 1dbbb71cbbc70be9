// Command brokeralias gives the channel-based Broker the address ripple's manifests use for the
// RabbitMQ Broker: eventing-rabbitmq serves a Broker's ingress as the Service
// <broker>-broker-ingress in the Broker's namespace at path /, which is what order-alerts'
// BROKER_URL names (knative/order-alerts/service.yaml); Eventing's MTChannelBasedBroker serves every
// Broker at broker-ingress.knative-eventing/<namespace>/<broker>. This reverse proxy, run as
// that Service, forwards each request to $TARGET (the Broker's status.address.url) with its
// method, headers and body unchanged, and hands back the ingress's answer, so ripple's manifests
// stay as the Helm chart renders them. It is part of the documented Broker-class deviation.
package main

import (
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	target, err := url.Parse(os.Getenv("TARGET"))
	if err != nil || target.Host == "" {
		log.Fatalf("brokeralias: TARGET=%q is not a URL: set it to the Broker's status.address.url", os.Getenv("TARGET"))
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host, r.Out.URL.Path, r.Out.URL.RawPath = target.Scheme, target.Host, target.Path, ""
			r.Out.Host = target.Host
		},
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	http.Handle("/", proxy)
	log.Printf("brokeralias: :%s -> %s", port, target)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

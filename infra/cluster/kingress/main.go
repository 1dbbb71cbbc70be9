// Command kingress is ripple's KIngress: a reverse proxy that follows Knative's
// networking.internal.knative.dev/v1alpha1 Ingresses of its class and reports them Ready.
//
// Why: every upstream Knative ingress (Kourier, Contour, Istio) needs Envoy, which no registry
// reachable from these machines ships. Knative Serving only needs an ingress that routes a host and
// path to the revision Services with the traffic split and the Knative-Serving-* headers, and that
// marks the Ingress Ready with a load balancer address; this program does exactly that.
//
// It runs as a process on the node (inside the cluster's network namespace): it reaches a
// revision through its Service's ClusterIP (kube-proxy's rules), and reports its own address as
// the load balancer, so Serving points the cluster-local names of a route at it.
//
// Configuration (environment):
//
//	KUBECONFIG        kubeconfig to use (required outside a pod)
//	KINGRESS_CLASS    ingress class it owns (default "ripple.ingress.networking.knative.dev")
//	KINGRESS_LISTEN   listen address (default ":80")
//	KINGRESS_ADDRESS  IP reported as the public load balancer (required: the node IP)
//	KINGRESS_PRIVATE_LISTEN  listen address of the private listener (default ":8081"): every
//	                  visibility, where cluster-local hosts are served
//	KINGRESS_PRIVATE_DOMAIN  cluster-local name of a Service leading to the private listener,
//	                  reported as the private load balancer (default: KINGRESS_ADDRESS as IP)
package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	netclient "knative.dev/networking/pkg/client/clientset/versioned"
	netinformers "knative.dev/networking/pkg/client/informers/externalversions"
)

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	class := env("KINGRESS_CLASS", "ripple.ingress.networking.knative.dev")
	listen := env("KINGRESS_LISTEN", ":80")
	privateListen := env("KINGRESS_PRIVATE_LISTEN", ":8081")
	address := os.Getenv("KINGRESS_ADDRESS")
	if address == "" {
		log.Fatal("kingress: set KINGRESS_ADDRESS to the IP this proxy is reached at (the node IP)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		log.Fatalf("kingress: no Kubernetes client configuration (set KUBECONFIG): %v", err)
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	net := netclient.NewForConfigOrDie(cfg)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	kubeFactory := informers.NewSharedInformerFactory(kube, 10*time.Minute)
	netFactory := netinformers.NewSharedInformerFactory(net, 10*time.Minute)
	services := kubeFactory.Core().V1().Services()
	endpoints := kubeFactory.Discovery().V1().EndpointSlices()
	ingresses := netFactory.Networking().V1alpha1().Ingresses()

	table := &Table{}
	rec := &Reconciler{
		Class:         class,
		Address:       address,
		PrivateDomain: os.Getenv("KINGRESS_PRIVATE_DOMAIN"),
		Lister:        ingresses.Lister(),
		Client:        net.NetworkingV1alpha1(),
		Table:         table,
		Services:      services.Lister(),
		Endpoints:     endpoints.Lister(),
		kick:          make(chan struct{}, 1),
	}
	ingresses.Informer().AddEventHandler(rec.Handler())
	services.Informer().AddEventHandler(rec.Handler())
	endpoints.Informer().AddEventHandler(rec.Handler())
	kubeFactory.Start(ctx.Done())
	netFactory.Start(ctx.Done())
	kubeFactory.WaitForCacheSync(ctx.Done())
	netFactory.WaitForCacheSync(ctx.Done())
	go rec.Run(ctx)

	serve := func(addr string, private bool) *http.Server {
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true) // gRPC and other h2c clients
		proxy := &Proxy{Private: private, Table: table, Services: services.Lister(), Endpoints: endpoints.Lister()}
		srv := &http.Server{Addr: addr, Handler: proxy, Protocols: protocols, ReadHeaderTimeout: 30 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
				log.Fatalf("kingress: cannot listen on %s: %v", addr, err)
			}
		}()
		return srv
	}
	servers := []*http.Server{serve(listen, false), serve(privateListen, true)}
	log.Printf("kingress: class %s, public %s, private %s, load balancer %s", class, listen, privateListen, address)
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shutdown)
	}
}

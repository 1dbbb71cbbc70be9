// Reconciler: keeps the routing table equal to the Ingresses of this class and marks each one
// Ready (network configured, load balancer = this proxy) once its generation is in the table.
package main

import (
	"context"
	"log"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	netv1alpha1 "knative.dev/networking/pkg/client/clientset/versioned/typed/networking/v1alpha1"
	netlisters "knative.dev/networking/pkg/client/listers/networking/v1alpha1"
)

// Reconciler rebuilds the table on any Ingress change and writes back the status.
type Reconciler struct {
	Class         string
	Address       string
	PrivateDomain string
	Lister        netlisters.IngressLister
	Client        netv1alpha1.NetworkingV1alpha1Interface
	Table         *Table
	Services      corelisters.ServiceLister
	Endpoints     discoverylisters.EndpointSliceLister
	kick          chan struct{}
	served        map[string]*v1alpha1.Ingress
}

// backendsReady: every split's Service exists and (unless it is an ExternalName) has a ready
// endpoint. Ready is reported only then, as upstream ingresses do after probing their data path.
func (r *Reconciler) backendsReady(ing *v1alpha1.Ingress) bool {
	for _, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for _, path := range rule.HTTP.Paths {
			for _, split := range path.Splits {
				svc, err := r.Services.Services(split.ServiceNamespace).Get(split.ServiceName)
				if err != nil {
					return false
				}
				if svc.Spec.Type == corev1.ServiceTypeExternalName {
					continue
				}
				eps, err := r.Endpoints.EndpointSlices(split.ServiceNamespace).List(
					labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: split.ServiceName}))
				if err != nil || !anyReady(eps) {
					return false
				}
			}
		}
	}
	return true
}

func anyReady(slices []*discoveryv1.EndpointSlice) bool {
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return true
			}
		}
	}
	return false
}

// Handler returns informer callbacks that request a rebuild.
func (r *Reconciler) Handler() cache.ResourceEventHandler {
	poke := func(any) {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, n any) { poke(n) },
		DeleteFunc: poke,
	}
}

// Run rebuilds on every kick, and every 30 s to retry failed status updates.
func (r *Reconciler) Run(ctx context.Context) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		r.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-tick.C:
		}
	}
}

func (r *Reconciler) owns(ing *v1alpha1.Ingress) bool {
	return ing.GetAnnotations()[networking.IngressClassAnnotationKey] == r.Class && ing.DeletionTimestamp == nil
}

func (r *Reconciler) sync(ctx context.Context) {
	all, err := r.Lister.List(labels.Everything())
	if err != nil {
		log.Printf("kingress: listing Ingresses: %v", err)
		return
	}
	var mine []*v1alpha1.Ingress
	for _, ing := range all {
		if r.owns(ing) {
			mine = append(mine, ing)
		}
	}
	// Serve each Ingress's newest generation once its backends have ready endpoints; until then
	// keep serving the generation served before, so an update never routes to a backend that
	// cannot answer yet (the conformance "update" test probes through the whole rollout).
	served := make(map[string]*v1alpha1.Ingress, len(mine))
	var pending []*v1alpha1.Ingress
	for _, ing := range mine {
		key := ing.Namespace + "/" + ing.Name
		if r.backendsReady(ing) {
			served[key] = ing
			continue
		}
		pending = append(pending, ing)
		if old, ok := r.served[key]; ok {
			served[key] = old
		} else {
			served[key] = ing // nothing served yet: better the new routes than none
		}
	}
	r.served = served
	table := make([]*v1alpha1.Ingress, 0, len(served))
	for _, ing := range served {
		table = append(table, ing)
	}
	r.Table.Store(table)
	public := []v1alpha1.LoadBalancerIngressStatus{{IP: r.Address}}
	private := []v1alpha1.LoadBalancerIngressStatus{{IP: r.Address}}
	if r.PrivateDomain != "" {
		private = []v1alpha1.LoadBalancerIngressStatus{{DomainInternal: r.PrivateDomain}}
	}
	for _, ing := range mine {
		upToDate := ing.IsReady() && ing.Status.PublicLoadBalancer != nil && ing.Status.PrivateLoadBalancer != nil &&
			equality.Semantic.DeepEqual(ing.Status.PublicLoadBalancer.Ingress, public) &&
			equality.Semantic.DeepEqual(ing.Status.PrivateLoadBalancer.Ingress, private)
		if upToDate || slices.Contains(pending, ing) {
			continue
		}
		next := ing.DeepCopy()
		next.Status.InitializeConditions()
		next.Status.MarkNetworkConfigured()
		next.Status.MarkLoadBalancerReady(public, private)
		next.Status.ObservedGeneration = ing.Generation
		if _, err := r.Client.Ingresses(ing.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			log.Printf("kingress: status of %s/%s: %v", ing.Namespace, ing.Name, err)
			continue
		}
		log.Printf("kingress: %s/%s ready (generation %d)", ing.Namespace, ing.Name, ing.Generation)
	}
}

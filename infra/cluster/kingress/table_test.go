package main

import (
	"net/http/httptest"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
)

func split(name string, percent int) v1alpha1.IngressBackendSplit {
	return v1alpha1.IngressBackendSplit{
		IngressBackend: v1alpha1.IngressBackend{ServiceNamespace: "ns", ServiceName: name, ServicePort: intstr.FromInt(80)},
		Percent:        percent,
		AppendHeaders:  map[string]string{"Knative-Serving-Revision": name},
	}
}

func TestMatchHostPathHeaders(t *testing.T) {
	ing := &v1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "hello"},
		Spec: v1alpha1.IngressSpec{Rules: []v1alpha1.IngressRule{{
			Hosts: []string{"hello.ns.ripple.test"},
			HTTP: &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{
				{Headers: map[string]v1alpha1.HeaderMatch{"Knative-Serving-Tag": {Exact: "blue"}}, Splits: []v1alpha1.IngressBackendSplit{split("blue", 100)}},
				{Path: "/api", Splits: []v1alpha1.IngressBackendSplit{split("api", 100)}},
				{Splits: []v1alpha1.IngressBackendSplit{split("main", 100)}},
			}},
		}}},
	}
	var tbl Table
	tbl.Store([]*v1alpha1.Ingress{ing})
	cases := []struct {
		host, path, tag, want string
	}{
		{"hello.ns.ripple.test", "/", "", "main"},
		{"hello.ns.ripple.test:8080", "/api/x", "", "api"},
		{"HELLO.ns.ripple.test", "/api", "blue", "blue"},
		{"other.ns.ripple.test", "/", "", ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "http://"+c.host+c.path, nil)
		if c.tag != "" {
			r.Header.Set("Knative-Serving-Tag", c.tag)
		}
		route, ok := tbl.Match(r, false)
		got := ""
		if ok {
			got = route.Path.Splits[0].ServiceName
		}
		if got != c.want {
			t.Errorf("%s%s tag %q: got %q, want %q", c.host, c.path, c.tag, got, c.want)
		}
	}
}

func TestClusterLocalOnlyOnPrivate(t *testing.T) {
	ing := &v1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "local"},
		Spec: v1alpha1.IngressSpec{Rules: []v1alpha1.IngressRule{{
			Hosts:      []string{"local.ns.svc.cluster.local"},
			Visibility: v1alpha1.IngressVisibilityClusterLocal,
			HTTP:       &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{Splits: []v1alpha1.IngressBackendSplit{split("local", 100)}}}},
		}}},
	}
	var tbl Table
	tbl.Store([]*v1alpha1.Ingress{ing})
	r := httptest.NewRequest("GET", "http://local.ns.svc.cluster.local/", nil)
	if _, ok := tbl.Match(r, false); ok {
		t.Error("a cluster-local host must not be served on the public listener")
	}
	if _, ok := tbl.Match(r, true); !ok {
		t.Error("a cluster-local host must be served on the private listener")
	}
}

func TestPickFollowsPercent(t *testing.T) {
	splits := []v1alpha1.IngressBackendSplit{split("a", 80), split("b", 20)}
	n := map[string]int{}
	for i := 0; i < 10000; i++ {
		s, _ := Pick(splits)
		n[s.ServiceName]++
	}
	if n["a"] < 7500 || n["a"] > 8500 {
		t.Errorf("80/20 split gave %v", n)
	}
	if s, _ := Pick([]v1alpha1.IngressBackendSplit{split("only", 0)}); s.ServiceName != "only" {
		t.Errorf("a single split without percent must be taken, got %q", s.ServiceName)
	}
}

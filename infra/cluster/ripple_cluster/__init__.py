"""ripple_cluster: a real single-node Kubernetes with real Knative Serving, built here from upstream
Go modules and run inside a network namespace of its own (see infra/cluster/README.md)."""

// Small programs the cluster's own images are made of: the pod sandbox (pause) and a test
// function (hello). Built here because no registry ships a pause image to these machines.
module ripple.local/infra/cluster/images

go 1.25.0

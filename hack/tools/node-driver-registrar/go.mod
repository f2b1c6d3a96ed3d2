module shiphold.local/tools/node-driver-registrar

// Built by hack/k8s-tools.sh in a module of its own (its requirements are resolved there);
// this file keeps it out of the driver module ./... .

go 1.26

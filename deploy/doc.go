// Package deploy holds no code that ships: its tests keep rowpipe's deployment
// files true. They load docker-compose.yml with the compose-spec loader, build
// the kustomizations under k8s/ in-process and decode every object strictly
// into typed Kubernetes objects, parse the NATS configurations with the
// nats-server that the project pins, read the Dockerfile and .dockerignore,
// and check that every environment variable named there exists in the
// service's Config struct (and that every required one is given).
//
// It is a module of its own so that its heavy test dependencies (compose-go,
// k8s.io/api, kustomize) never enter a service module. Run it with
//
//	cd deploy && go test ./...
//
// No Docker engine or Kubernetes cluster is needed.
package deploy

module github.com/rowpipe/rowpipe/services/ingester

go 1.26.0

require (
	github.com/kelseyhightower/envconfig v1.4.0
	github.com/nats-io/nats.go v1.56.0
	github.com/rowpipe/rowpipe/pkg/schema v0.0.0
	github.com/rowpipe/rowpipe/pkg/svc v0.0.0
	github.com/schollz/progressbar/v3 v3.19.1
	golang.org/x/term v0.48.0
	golang.org/x/text v0.44.0
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/mitchellh/colorstring v0.0.0-20190213212951-d06e56a500db // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nats-server/v2 v2.15.2 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/rivo/uniseg v0.4.7 // indirect
	github.com/synadia-io/orbit.go/jetstreamext v0.4.0 // indirect
	github.com/synadia-io/orbit.go/natsext v0.1.3 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)

// The workspace (go.work) resolves this too; the replace keeps the module
// buildable on its own, as in the container image build.
replace (
	github.com/rowpipe/rowpipe/pkg/schema => ../../pkg/schema
	github.com/rowpipe/rowpipe/pkg/svc => ../../pkg/svc
)

// Package natsauth is rowpipe's NATS authorization: one user per role, each
// allowed only the subjects its work needs. The stack's embedded server is
// configured from it, and deploy's tests hold the nats.conf files of
// docker compose and Kubernetes to the same lists.
//
// The api is not a role: it reads DATA_DIR and holds no NATS credentials.
package natsauth

import (
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/svc"
)

// Role is a NATS user name of rowpipe.
type Role string

const (
	// Ingester publishes rows.> and reads (and waits on) dataset states.
	Ingester Role = "ingester"
	// Writer consumes the rows stream, purges what it no longer needs and
	// writes dataset states.
	Writer Role = "writer"
	// Admin is the operator with the nats CLI (the README's runbook):
	// everything in the account, backups and restores included.
	Admin Role = "admin"
)

// Roles are every role, in the order they are documented.
var Roles = []Role{Ingester, Writer, Admin}

// PasswordVar is the environment variable that holds role's password in
// the stack's, compose's and Kubernetes' NATS configuration.
func (r Role) PasswordVar() string {
	switch r {
	case Ingester:
		return "NATS_INGESTER_PASSWORD"
	case Writer:
		return "NATS_WRITER_PASSWORD"
	}
	return "NATS_ADMIN_PASSWORD"
}

// Permissions are what role may publish and subscribe to on the stream
// named stream (STREAM) and its state bucket.
func Permissions(role Role, stream string) *server.Permissions {
	inbox := &server.SubjectPermission{Allow: []string{svc.InboxPrefix(string(role)) + ".>"}}
	switch role {
	case Ingester:
		pub := slices.Concat(
			[]string{schema.AllSubjects, "$JS.API.INFO"},
			// BindStream binds the stream, creating it if missing, never
			// updating it; the publisher reads the last message of a
			// dataset to resume after it.
			streamBind(stream), streamRead(stream),
			stateRead(stream),
		)
		return &server.Permissions{Publish: &server.SubjectPermission{Allow: pub}, Subscribe: inbox}
	case Writer:
		pub := slices.Concat(
			[]string{"$JS.API.INFO"},
			streamBind(stream), streamRead(stream),
			[]string{
				// EnsureStream and EnsureStateBucket may update them.
				"$JS.API.STREAM.UPDATE." + stream,
				"$JS.API.STREAM.UPDATE.KV_" + schema.StateBucket(stream),
				"$JS.API.STREAM.PURGE." + stream,
				"$JS.API.CONSUMER.CREATE." + stream,
				"$JS.API.CONSUMER.CREATE." + stream + ".>",
				"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".>",
				"$JS.API.CONSUMER.MSG.NEXT." + stream + ".>",
				"$JS.API.CONSUMER.INFO." + stream + ".>",
				"$JS.API.CONSUMER.DELETE." + stream + ".>",
				"$JS.ACK." + stream + ".>",
				"$JS.FC." + stream + ".>",
				"$KV." + schema.StateBucket(stream) + ".>",
			},
			stateRead(stream),
		)
		return &server.Permissions{Publish: &server.SubjectPermission{Allow: pub}, Subscribe: inbox}
	}
	all := &server.SubjectPermission{Allow: []string{">"}}
	return &server.Permissions{Publish: all, Subscribe: all}
}

// streamBind describes the stream and creates it where it is missing
// (schema.BindStream); creating an existing stream with another
// configuration is refused by the server, so it changes nothing.
func streamBind(stream string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.STREAM.CREATE." + stream,
	}
}

// streamRead reads single messages of the stream.
func streamRead(stream string) []string {
	return []string{
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
	}
}

// stateRead binds the state bucket or creates it where missing (schema.EnsureStateBucket), gets a key and watches it
// (an ordered consumer on the bucket's stream).
func stateRead(stream string) []string {
	kv := "KV_" + schema.StateBucket(stream)
	return []string{
		"$JS.API.STREAM.INFO." + kv,
		"$JS.API.STREAM.CREATE." + kv,
		"$JS.API.STREAM.MSG.GET." + kv,
		"$JS.API.DIRECT.GET." + kv + ".>",
		"$JS.API.CONSUMER.CREATE." + kv,
		"$JS.API.CONSUMER.CREATE." + kv + ".>",
		"$JS.API.CONSUMER.INFO." + kv + ".>",
		"$JS.API.CONSUMER.DELETE." + kv + ".>",
		"$JS.FC." + kv + ".>",
	}
}

// Users are the server's users for the given passwords, one per role
// present.
func Users(passwords map[Role]string, stream string) []*server.User {
	var users []*server.User
	for _, r := range Roles {
		if p, ok := passwords[r]; ok {
			users = append(users, &server.User{Username: string(r), Password: p, Permissions: Permissions(r, stream)})
		}
	}
	return users
}

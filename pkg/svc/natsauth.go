package svc

import (
	"errors"

	"github.com/nats-io/nats.go"
)

// NATSAuth is how a rowpipe client proves who it is to NATS: a credentials
// file (NATS_CREDS, for servers in operator/JWT mode) or a user and a
// password (NATS_USER, NATS_PASSWORD; the nats CLI reads the same
// variables). All empty: no credentials, for a server without
// authentication (a stack on loopback).
type NATSAuth struct {
	Creds    string
	User     string
	Password string
}

// Options returns the nats.go options for a, or an error naming the
// variable to fix.
func (a NATSAuth) Options() ([]nats.Option, error) {
	switch {
	case a.Creds != "" && (a.User != "" || a.Password != ""):
		return nil, errors.New("NATS_CREDS and NATS_USER/NATS_PASSWORD are both set: use one")
	case a.Creds != "":
		return []nats.Option{nats.UserCredentials(a.Creds)}, nil
	case a.User != "" && a.Password == "":
		return nil, errors.New("NATS_USER is set without NATS_PASSWORD")
	case a.User == "" && a.Password != "":
		return nil, errors.New("NATS_PASSWORD is set without NATS_USER")
	case a.User != "":
		return []nats.Option{nats.UserInfo(a.User, a.Password), nats.CustomInboxPrefix(InboxPrefix(a.User))}, nil
	}
	return nil, nil
}

// InboxPrefix is the reply subject prefix of a user's connections:
// "_INBOX_<user>". A user may subscribe to its own replies only, so one
// role cannot read the answers (rows, states) another role receives.
func InboxPrefix(user string) string { return "_INBOX_" + user }

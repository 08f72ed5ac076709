package stack

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/rowpipe/rowpipe/services/stack/internal/broker"
	"github.com/rowpipe/rowpipe/services/stack/natsauth"
)

// minPasswordLen is the shortest NATS password the stack accepts: 16
// characters, such as 8 random bytes in hex.
const minPasswordLen = 16

// natsAuth is the embedded server's authentication: off (passwords nil)
// or one password per role.
type natsAuth struct {
	passwords map[natsauth.Role]string
	// warning, when not empty, is logged at start: NATS is open beyond
	// loopback because NATS_AUTH=off says so.
	warning string
}

// natsAuth decides the embedded server's authentication from NATS_AUTH,
// NATS_LISTEN and the role passwords. The error says what to set.
func (c Config) natsAuth() (natsAuth, error) {
	given := map[natsauth.Role]string{
		natsauth.Ingester: c.NATSIngesterPassword,
		natsauth.Writer:   c.NATSWriterPassword,
		natsauth.Admin:    c.NATSAdminPassword,
	}
	anySet := false
	for _, r := range natsauth.Roles {
		if p := given[r]; p != "" {
			anySet = true
			if len(p) < minPasswordLen {
				return natsAuth{}, fmt.Errorf("%s: at least %d characters (e.g. $(openssl rand -hex 24))", r.PasswordVar(), minPasswordLen)
			}
		}
	}
	mode := strings.ToLower(c.NATSAuth)
	switch mode {
	case "", "on", "off":
	default:
		return natsAuth{}, fmt.Errorf("NATS_AUTH=%q: want on or off (unset: on when a NATS_*_PASSWORD is set)", c.NATSAuth)
	}
	if mode == "off" {
		if anySet {
			return natsAuth{}, errors.New("NATS_AUTH=off and a NATS_*_PASSWORD are both set: unset one")
		}
		a := natsAuth{}
		if !loopbackOnly(c.NATSListen) {
			a.warning = "NATS_AUTH=off: NATS serves " + c.NATSListen + " without authentication; whoever reaches it can read, forge and delete every dataset"
		}
		return a, nil
	}
	if !anySet && mode == "" {
		if loopbackOnly(c.NATSListen) {
			return natsAuth{}, nil
		}
		return natsAuth{}, fmt.Errorf("NATS_LISTEN=%s serves NATS beyond this machine, so it needs credentials: set NATS_INGESTER_PASSWORD (bin/ingester), NATS_WRITER_PASSWORD (a replica writer) and/or NATS_ADMIN_PASSWORD (the nats CLI), or NATS_AUTH=off to serve it to anyone who reaches the port", c.NATSListen)
	}
	a := natsAuth{passwords: map[natsauth.Role]string{}}
	for _, r := range natsauth.Roles {
		p := given[r]
		if p == "" {
			p = randomPassword()
		}
		a.passwords[r] = p
	}
	return a, nil
}

// loopbackOnly reports whether NATS_LISTEN keeps NATS on this machine: off,
// or a loopback host.
func loopbackOnly(listen string) bool {
	if listen == broker.Off {
		return true
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false // broker.Start says what is wrong with it
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// randomPassword is a password nobody outside this process knows.
func randomPassword() string {
	b := make([]byte, 24)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// CheckNATSAuth reports a NATS authentication setting Start would refuse
// (NATS_AUTH, the passwords, NATS_LISTEN beyond loopback without
// credentials), for main to exit with a usage error before starting.
func (c Config) CheckNATSAuth() error {
	_, err := c.natsAuth()
	return err
}

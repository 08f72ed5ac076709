package svc

import (
	"net/url"
	"strings"
)

// RedactURLs drops the user information of a comma-separated NATS URL
// list: it may hold a password or a token, which never goes to a log. A
// URL without a scheme ("alice:s3cret@nats:4222", which nats.go accepts)
// is read as nats://; an entry that does not parse but holds an '@' loses
// everything before it.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func redactURL(p string) string {
	raw := p
	if !strings.Contains(p, "://") {
		raw = "nats://" + p
	}
	u, err := url.Parse(raw)
	if err != nil {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			return "REDACTED@" + p[at+1:]
		}
		return p
	}
	if u.User == nil {
		return p
	}
	u.User = url.User("REDACTED")
	if raw != p {
		return strings.TrimPrefix(u.String(), "nats://")
	}
	return u.String()
}
